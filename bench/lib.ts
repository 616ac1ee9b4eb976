/** Shared helpers for benchmarks: percentiles, result files, a local mesh of node processes. */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]!
}

export function summary (samples: number[]): { n: number, p50: number, p90: number, p99: number, max: number, mean: number } {
  const s = [...samples].sort((a, b) => a - b)
  return { n: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s.at(-1) ?? NaN, mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length) }
}

export function machine (): Record<string, unknown> {
  return { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), platform: process.platform }
}

/** Writes `bench/results/<name>-<timestamp>.json` and `<name>-latest.json`; returns the path. */
export async function writeResult (name: string, result: Record<string, unknown>): Promise<string> {
  const dir = join(new URL('..', import.meta.url).pathname, 'bench', 'results')
  await mkdir(dir, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const body = JSON.stringify({ benchmark: name, at: new Date().toISOString(), machine: machine(), ...result }, null, 2) + '\n'
  const path = join(dir, `${name}-${stamp}.json`)
  await writeFile(path, body)
  await writeFile(join(dir, `${name}-latest.json`), body)
  return path
}

export function fmt (n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : String(n)
}

/** Runs `fn(0..total-1)` with `workers` calls in flight at once; resolves to the calls per second. */
export async function concurrently (workers: number, total: number, fn: (n: number) => Promise<unknown>): Promise<number> {
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: workers }, async () => {
    while (next < total) await fn(next++)
  }))
  return total / ((performance.now() - t0) / 1000)
}
