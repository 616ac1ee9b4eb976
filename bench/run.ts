/**
 * `npm run bench [-- name…]`: runs the named benchmarks (default: all) and
 * writes JSON under bench/results/. Each benchmark measures the raw substrate
 * beside BeeMesh's layer in the same run and prints the ratio.
 */
const all: Record<string, () => Promise<void>> = {
  scheduler: async () => { await (await import('./scheduler.js')).run() },
  state: async () => { await (await import('./state.js')).run() },
  containers: async () => { await (await import('./containers.js')).run() },
  scale: async () => { await (await import('./scale.js')).run() },
  services: async () => { await (await import('./services.js')).run() },
  sandbox: async () => { await (await import('./sandbox.js')).run() },
  footprint: async () => { await (await import('./footprint.js')).run() }
}

const wanted = process.argv.slice(2)
const unknown = wanted.filter(w => all[w] == null)
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(all).join(', ')}\n`)
  process.exit(2)
}
for (const name of wanted.length > 0 ? wanted : Object.keys(all)) {
  process.stdout.write(`\n== ${name} ==\n`)
  await all[name]!()
}
process.exit(0)
