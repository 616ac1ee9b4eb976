// The caller of the services bench, on the node labelled role=client. On `svc-bench.go`
// it makes `warmup` unmeasured calls, then `n` measured ones with `concurrency` in
// flight, timing each with performance.now(), and logs one line, `svc bench done`,
// with the latency percentiles (ms; nearest rank, as bench/lib.ts) and the rate.
import { defineWorkload } from 'beemesh'

interface Go { run: string, service: string, n: number, concurrency: number, warmup: number, timeout?: number }

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export default defineWorkload<Go>({
  name: 'svc-caller',
  kind: 'stateless',
  topics: ['svc-bench.go'],
  nodeSelector: { role: 'client' },
  resources: { cpu: '10m', memory: '64Mi' },
  timeoutMs: 600_000,
  retries: 0,
  handler: async (event, ctx) => {
    const { run, service, n, concurrency, warmup, timeout = 10_000 } = event.data
    const latencies: number[] = []
    const errors: string[] = []
    let failed = 0
    const pass = async (total: number, measure: boolean): Promise<number> => {
      let next = 0
      const t0 = performance.now()
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < total) {
          const i = next++
          const s = performance.now()
          try {
            const reply = await ctx.call<{ echo: { i: number } }>(service, { i }, { timeout })
            if (reply.echo.i !== i) throw new Error(`reply to ${i} carried ${reply.echo.i}`)
            if (measure) latencies.push(performance.now() - s)
          } catch (err) {
            if (measure) failed++
            if (errors.length < 5) errors.push(String((err as Error).message))
          }
        }
      }))
      return performance.now() - t0
    }
    await pass(warmup, false)
    const ms = await pass(n, true)
    const sorted = [...latencies].sort((a, b) => a - b)
    ctx.log('svc bench done', {
      run,
      n,
      concurrency,
      ok: latencies.length,
      failed,
      errors,
      ms,
      perSecond: latencies.length / (ms / 1000),
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? NaN,
      mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)
    })
  }
})
