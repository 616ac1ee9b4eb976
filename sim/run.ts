/**
 * `npm run sim -- --nodes 100,1000,10000`: the mesh's decision code at sizes
 * no machine here can spawn, on a virtual clock (sim/engine.ts). Seeded and
 * deterministic: the same options give the same bench/results/sim-latest.json
 * (wall times go to the timestamped copy only).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { plotSim } from '../bench/plot.js'
import { PROFILES, SimNetwork, Simulation } from './engine.js'
import { simulateMembership, type MembershipFigures } from './membership.js'
import { simulateSize, type SizeFigures } from './placement.js'

const HELP = `Usage: npm run sim -- [options]

Runs the real placement and failure-detection code of every node of a
simulated mesh on a virtual clock, and writes bench/results/sim-latest.json and docs/images/sim.svg.
Membership: the mesh at rest, then 10 kills and 10 silences (one a second;
fewer below 100 nodes),
10 joins, and a tenth of the nodes cut off for 10 s.

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
  const results: Array<SizeFigures & Pick<MembershipFigures, 'detectionP50Ms' | 'detectionP99Ms' | 'restMessagesPerNodePerSec'> & { membership: MembershipFigures }> = []
  const wall: Record<string, number> = {}
  for (const n of sizes) {
    const { figures, wallMs } = await simulateSize(n, o)
    process.stdout.write(`${n} nodes: ${figures.placements}/${o.placements} placed, ${figures.messagesPerPlacement} messages a placement, p50 ${figures.placementP50Ms} ms, p99 ${figures.placementP99Ms} ms, ${figures.duplicatePlacements} duplicate, ${figures.lostPlacements} lost (${(wallMs / 1000).toFixed(1)} s wall)\n`)
    const t0 = performance.now()
    const sim = new Simulation(o.seed * 7_919 + n, { promises: false })
    const victims = Math.max(1, Math.min(10, Math.floor(n / 10)))
    const membership = await simulateMembership(sim, new SimNetwork(sim, PROFILES[o.profile]!), n, { kills: victims, silences: victims, joins: 10, restSeconds: 10 })
    const memberMs = performance.now() - t0
    process.stdout.write(`${n} nodes: failure detected p50 ${membership.detectionP50Ms} ms, p99 ${membership.detectionP99Ms} ms (killed ${membership.killedDetectionP99Ms}, silent ${membership.silentDetectionP99Ms}), ${membership.undetected} undetected, ${membership.falseDeaths} false; ${membership.restMessagesPerNodePerSec} messages a node a second at rest (${(memberMs / 1000).toFixed(1)} s wall)\n`)
    results.push({ ...figures, detectionP50Ms: membership.detectionP50Ms, detectionP99Ms: membership.detectionP99Ms, restMessagesPerNodePerSec: membership.restMessagesPerNodePerSec, membership })
    wall[n] = Math.round(wallMs + memberMs) / 1000
  }
  const dir = join(new URL('..', import.meta.url).pathname, 'bench', 'results')
  await mkdir(dir, { recursive: true })
  const body = { benchmark: 'sim', settings: o, sizes: results }
  await writeFile(join(dir, 'sim-latest.json'), JSON.stringify(body, null, 2) + '\n')
  const stamped = join(dir, `sim-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  await writeFile(stamped, JSON.stringify({ ...body, at: new Date().toISOString(), wallSeconds: wall }, null, 2) + '\n')
  const plot = join(new URL('..', import.meta.url).pathname, 'docs', 'images', 'sim.svg')
  await writeFile(plot, await plotSim(body))
  process.stdout.write(`wrote bench/results/sim-latest.json, ${stamped} and docs/images/sim.svg\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`sim: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
