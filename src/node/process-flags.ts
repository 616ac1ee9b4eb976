/**
 * The V8 flags a BeeMesh node process runs with: a long-lived daemon with a
 * small heap, where memory at rest matters more than peak throughput, and a
 * start that should cost little CPU. Each flag's share of idle RSS and start
 * CPU is measured by `npm run bench -- footprint` (docs/benchmarks.md,
 * "V8 flags"):
 *  - `--no-short-builtin-calls`: no private copy of the embedded builtins in
 *    the code range (V8 makes one on machines with 4 GB or more);
 *  - `--single-threaded`: no background compile and GC threads, so no malloc
 *    arenas and stacks for them (a node does its work on one core anyway);
 *  - `--bytecode-old-age=1` with `--flush-baseline-code`: bytecode and
 *    baseline code of functions not run lately (start-up code) are flushed at
 *    the next full collections instead of after five.
 * `bin/beemesh.js` carries the same flags on its `#!` line (a test checks
 * they agree); `beemesh up` and the tests pass them when they spawn a node.
 */
export const NODE_V8_FLAGS: readonly string[] = [
  '--no-short-builtin-calls',
  '--single-threaded',
  '--bytecode-old-age=1',
  '--flush-baseline-code'
]

/**
 * Set once the node is up (`v8.setFlagsFromString`), not at spawn:
 * `--optimize-for-size` keeps the young generation at 1 MB and the old one
 * tight, which a node at rest wants; from spawn it would cost the start ~50 ms
 * of CPU in collections (19 scavenges and a full collection instead of 6
 * scavenges). BEEMESH_V8_FLAGS_AT_REST=0 leaves them unset (the footprint
 * benchmark's comparison).
 */
export const NODE_V8_FLAGS_AT_REST: readonly string[] = ['--optimize-for-size']

/** The at-rest flags this process should set: NODE_V8_FLAGS_AT_REST, or none when BEEMESH_V8_FLAGS_AT_REST is '' or '0' (no other flags are taken from the environment). */
export function flagsAtRest (env: NodeJS.ProcessEnv = process.env): string[] {
  const given = env.BEEMESH_V8_FLAGS_AT_REST
  return given === '' || given === '0' ? [] : [...NODE_V8_FLAGS_AT_REST]
}
