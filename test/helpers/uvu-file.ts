// Runs one uvu spec file (argv[2]) the way the uvu CLI does; used by test/run.ts.
// uvu 0.5 swallows an exception thrown by a before/after hook (its runner
// returns from a finally block), so hooks are wrapped to print theirs, and the
// process exits when the file is done rather than wait on leftover handles.
import { relative } from 'node:path'
import { run } from 'uvu/run'

const file = process.argv[2]
if (file == null) throw new Error('usage: uvu-file.ts <spec file>')

// As uvu/run does, before uvu is first loaded: queue suites instead of running them at once.
;(globalThis as { UVU_DEFER?: number }).UVU_DEFER = 1
const uvu = await import('uvu')
const original = uvu.suite
const wrapHooks = <T extends ReturnType<typeof original>>(s: T): T => {
  for (const name of ['before', 'after'] as const) {
    const register = s[name].bind(s)
    const each = s[name].each
    ;(s as Record<string, unknown>)[name] = Object.assign((fn: (ctx: unknown) => unknown) => register(async (ctx: unknown) => {
      try {
        await fn(ctx)
      } catch (err) {
        process.stdout.write(`\n   FAIL  ${name} hook: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
        throw err
      }
    }), { each })
  }
  return s
}
wrapHooks(uvu.test)

await run([{ name: relative(process.cwd(), file), file }], { bail: false })
process.exit(process.exitCode ?? 0)
