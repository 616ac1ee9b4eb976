/**
 * `npm run sim -- --nodes 100,1000,10000`: the mesh's decision code at sizes
 * no machine here can spawn, on a virtual clock (sim/engine.ts). Seeded and
 * deterministic: the same options give the same bench/results/sim-latest.json
 * (wall times go to the timestamped copy only).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { PROFILES } from './engine.js'
import { simulateSize, type SizeFigures } from './placement.js'

const HELP = `Usage: npm run sim -- [options]

Runs the real placement code of every node of a simulated mesh on a virtual
clock, and writes bench/results/sim-latest.json.

Options:
  --nodes <list>       mesh sizes, comma-separated (default 100,1000,10000)
  --placements <n>     workloads applied per size (default 200)
  --rate <n>           applies per second, at random nodes (default 20)
  --replicas <n>       replicas per workload (default 1)
  --profile <name>     network: ${Object.keys(PROFILES).join(', ')} (default lan)
  --seed <n>           random seed (default 1)
  -h, --help           this text
`

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '100,1000,10000' },
      placements: { type: 'string', default: '200' },
      rate: { type: 'string', default: '20' },
      replicas: { type: 'string', default: '1' },
      profile: { type: 'string', default: 'lan' },
      seed: { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help) { process.stdout.write(HELP); return }
  const positive = (name: string, v: string): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive whole number, got "${v}"`)
    return n
  }
  const sizes = values.nodes.split(',').map(v => positive('nodes', v.trim()))
  const o = { placements: positive('placements', values.placements), rate: positive('rate', values.rate), replicas: positive('replicas', values.replicas), profile: values.profile, seed: positive('seed', values.seed) }
  const results: SizeFigures[] = []
  const wall: Record<string, number> = {}
  for (const n of sizes) {
    const { figures, wallMs } = await simulateSize(n, o)
    results.push(figures)
    wall[n] = Math.round(wallMs) / 1000
    process.stdout.write(`${n} nodes: ${figures.placements}/${o.placements} placed, ${figures.messagesPerPlacement} messages a placement, p50 ${figures.placementP50Ms} ms, p99 ${figures.placementP99Ms} ms, ${figures.duplicatePlacements} duplicate, ${figures.lostPlacements} lost (${(wallMs / 1000).toFixed(1)} s wall)\n`)
  }
  const dir = join(new URL('..', import.meta.url).pathname, 'bench', 'results')
  await mkdir(dir, { recursive: true })
  const body = { benchmark: 'sim', settings: o, sizes: results }
  await writeFile(join(dir, 'sim-latest.json'), JSON.stringify(body, null, 2) + '\n')
  const stamped = join(dir, `sim-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  await writeFile(stamped, JSON.stringify({ ...body, at: new Date().toISOString(), wallSeconds: wall }, null, 2) + '\n')
  process.stdout.write(`wrote bench/results/sim-latest.json and ${stamped}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`sim: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
