/**
 * The fault schedule: a list of steps fixed by the seed. Which node a step
 * hits depends on who owns what when it runs, so targets are picked then,
 * with the same seeded generator, among candidates in host order: the same
 * seed and the same ownership give the same run.
 */

import { seededRandom } from '../src/random.js'

export function pick<T> (random: () => number, items: readonly T[]): T {
  if (items.length === 0) throw new Error('pick: no candidates')
  return items[Math.floor(random() * items.length)]!
}

export type FaultStep =
  /** SIGKILL the node owning `workload`. */
  | { kind: 'kill-owner', workload: string }
  /** SIGKILL a node hosting a replica of `workload` that owns no stateful workload. */
  | { kind: 'kill-replica', workload: string }
  /** SIGKILL a random live node that owns no stateful workload. */
  | { kind: 'kill-any' }
  /** Restart every killed node on its data dir. */
  | { kind: 'restart' }
  /** Cut `size` nodes (the owner of `workload`, one of its holders, and random others) off from the rest. */
  | { kind: 'partition', workload: string, size: number, holdMs: number }
  | { kind: 'heal' }

export interface Schedule { seed: number, steps: FaultStep[], gapsMs: number[] }

/**
 * 5 SIGKILLs (3 of owners), 3 restarts, one partition of 3 of 10 nodes and its
 * heal. The workloads each owner kill and the partition target are drawn from
 * the seed; so are the pauses after each step's recovery (2–5 s, scaled by
 * `pace`).
 */
export function makeSchedule (seed: number, statefulWorkloads: string[], queueWorkload: string, { pace = 1 }: { pace?: number } = {}): Schedule {
  const random = seededRandom(seed)
  const shuffled = statefulWorkloads.map(w => ({ w, r: random() })).sort((a, b) => a.r - b.r).map(x => x.w)
  const w = (i: number): string => shuffled[i % shuffled.length]!
  const steps: FaultStep[] = [
    { kind: 'kill-owner', workload: w(0) },
    { kind: 'kill-replica', workload: queueWorkload },
    { kind: 'restart' },
    { kind: 'kill-owner', workload: w(1) },
    { kind: 'kill-any' },
    { kind: 'restart' },
    { kind: 'partition', workload: w(2), size: 3, holdMs: Math.round((12_000 + random() * 6_000) * pace) },
    { kind: 'heal' },
    { kind: 'kill-owner', workload: pick(random, shuffled) },
    { kind: 'restart' }
  ]
  const gapsMs = steps.map(() => Math.round((2_000 + random() * 3_000) * pace))
  return { seed, steps, gapsMs }
}

export function describeStep (step: FaultStep): string {
  switch (step.kind) {
    case 'kill-owner': return `SIGKILL the owner of ${step.workload}`
    case 'kill-replica': return `SIGKILL a node hosting a ${step.workload} replica (owning no machine)`
    case 'kill-any': return 'SIGKILL a random node owning no machine'
    case 'restart': return 'restart the killed nodes on their data dirs'
    case 'partition': return `partition: cut ${step.size} nodes (the owner of ${step.workload}, one of its holders, one more) off for ${(step.holdMs / 1000).toFixed(1)} s`
    case 'heal': return 'heal the partition'
  }
}
