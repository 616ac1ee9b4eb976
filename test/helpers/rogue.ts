import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT, type Running, waitUntil } from './processes.js'

/** A hostile peer process: its stdout is one JSON line per step (`{"event": …}`). */
export interface Rogue extends Running {
  /** Resolves with the first stdout line of this event, parsed. */
  event: (name: string, timeoutMs?: number) => Promise<Record<string, unknown>>
}

/**
 * Starts test/fixtures/security/rogue.ts as its own OS process (see its header
 * for the modes). `stdin`: keep its standard input open, for modes that wait
 * for a line before their next step.
 */
export function startRogue (args: string[], { stdin = false }: { stdin?: boolean } = {}): Rogue {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/security/rogue.ts'), ...args], { cwd: ROOT, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<number | null>(resolve => child.on('exit', resolve))
  const waitForOutput = async (pattern: RegExp, { timeoutMs = 20_000 }: { timeoutMs?: number } = {}): Promise<RegExpExecArray> =>
    await waitUntil(() => pattern.exec(out), { timeoutMs, intervalMs: 100, what: `rogue to print ${String(pattern)} (stderr: ${err.slice(-500)})` })
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForOutput,
    event: async (name, timeoutMs) => JSON.parse((await waitForOutput(new RegExp(`^\\{"event":"${name}".*$`, 'm'), { timeoutMs }))[0]) as Record<string, unknown>
  }
}
