import { setTimeout as sleep } from 'node:timers/promises'
import type { Isolation } from './confine.js'

/**
 * What every kind of sandbox does alike (ReplicaSandbox for a stateless
 * replica, MachineSandbox for a stateful machine): it keeps one worker
 * serving, replaces a worker that hangs, crashes or exits (with growing
 * delays while workers keep failing), stops them all on `stop`, and runs
 * the jobs given to it one at a time, in order (Mailbox). The sandboxes add
 * what their workers speak: loading, invocations, transitions.
 *
 * A sandbox goes `new` → `starting` (its first worker loading) → `running`
 * → `stopped`; a first worker that fails to load puts it back to `new`.
 * Only a running sandbox replaces its workers.
 */

/** Longest wait before a restart, while workers keep failing. */
const MAX_RESTART_DELAY_MS = 30_000

/** The wait before the restart after `consecutiveFailures` failures in a row: none for the first, then 100 ms doubling. */
export function restartDelay (consecutiveFailures: number): number {
  return consecutiveFailures <= 1 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** (consecutiveFailures - 2))
}

export interface ThreadExit {
  code: number
  /** The error the thread emitted before exiting (uncaught exception, ERR_WORKER_OUT_OF_MEMORY). */
  error?: Error
}

export interface Thread {
  /** Sends a message to the worker; throws when it cannot be sent (the worker is gone). */
  post: (msg: unknown) => void
  /** Ends the worker (a thread is terminated, a confined child killed); resolves once it is gone. */
  terminate: () => Promise<void>
  /** Resolves (never rejects) once the worker has exited. */
  exited: Promise<ThreadExit>
  isolation: Isolation
}

/** One worker a supervisor looks after. */
export interface Supervised {
  thread: Thread
  /** Terminated on purpose (timeout, stop, failed start) or replaced: its exit needs no reaction. */
  retired: boolean
}

export type SupervisorStatus = 'new' | 'starting' | 'running' | 'stopped'

export interface SupervisorInit<L extends Supervised> {
  /** Starts a successor worker after `delayMs` (see `backoff`) and resolves once it serves. */
  respawn: (delayMs: number) => Promise<L>
  /** The error for anything asked of a stopped sandbox. */
  stoppedError: () => Error
  /** A successor could not be started while the sandbox runs (the next job tries again). */
  onRestartFailed: (err: unknown) => void
  /** A successor is about to be started (for the sandbox's restart count). */
  onRestart?: () => void
}

export class Supervisor<L extends Supervised> {
  private phase: SupervisorStatus = 'new'
  /** The worker serving jobs, or being started. */
  private serving?: Promise<L>
  private readonly threads = new Set<L>()
  private consecutiveFailures = 0
  private readonly lifetime = new AbortController()

  constructor (private readonly init: SupervisorInit<L>) {}

  get status (): SupervisorStatus {
    return this.phase
  }

  /** The worker serving (or being started), if any. */
  get current (): Promise<L> | undefined {
    return this.serving
  }

  /** A method, not a property check, so TypeScript does not narrow `status` across awaits. */
  stopped (): boolean {
    return this.phase === 'stopped'
  }

  /** The first worker is loading: `first` serves once it has. */
  starting (first: Promise<L>): void {
    this.phase = 'starting'
    this.serving = first
  }

  /** The first worker did not load: back to `new` (unless stopped meanwhile); true if it was still starting. */
  startFailed (first: Promise<L>): boolean {
    if (this.serving === first) this.serving = undefined
    if (this.phase !== 'starting') return false
    this.phase = 'new'
    return true
  }

  /** The first worker serves. */
  started (): void {
    if (this.phase === 'starting') this.phase = 'running'
  }

  /**
   * Waits a restart's delay, cut short by `stop` (then it throws the stopped
   * error, as it does when the sandbox is stopped already).
   */
  async backoff (delayMs: number): Promise<void> {
    if (delayMs > 0) {
      try {
        await sleep(delayMs, undefined, { signal: this.lifetime.signal })
      } catch {
        throw this.init.stoppedError()
      }
    }
    if (this.stopped()) throw this.init.stoppedError()
  }

  /** A worker was spawned: `stop` terminates it. */
  track (live: L): void {
    this.threads.add(live)
  }

  /** A worker exited. */
  exited (live: L): void {
    this.threads.delete(live)
  }

  /** A job succeeded: the next failure restarts without delay. */
  succeeded (): void {
    this.consecutiveFailures = 0
  }

  /** The serving worker can serve no more, and is not to be replaced (the machine failed with it). */
  drop (): void {
    this.serving = undefined
  }

  /** Retires a worker and, while running, starts its successor (with backoff when workers keep failing). */
  replace (live: L): void {
    if (live.retired) return
    live.retired = true
    void live.thread.terminate()
    if (this.phase !== 'running') return
    this.respawn()
  }

  /** The worker to run a job on: the serving one, or a successor started now. */
  async acquire (): Promise<L> {
    if (this.serving == null) {
      if (this.phase !== 'running') throw this.init.stoppedError()
      this.respawn()
    }
    return await (this.serving as Promise<L>)
  }

  private respawn (): void {
    this.init.onRestart?.()
    this.consecutiveFailures++
    const next = this.init.respawn(restartDelay(this.consecutiveFailures))
    this.serving = next
    next.catch(err => {
      if (this.serving === next) this.serving = undefined
      if (this.phase === 'running') this.init.onRestartFailed(err)
    })
  }

  /**
   * Stops: cuts restart delays short, runs `onStop` once (to end the jobs
   * still queued), then retires and terminates every worker.
   */
  async stop (onStop: () => void): Promise<void> {
    if (this.phase !== 'stopped') {
      this.phase = 'stopped'
      this.lifetime.abort()
      this.serving = undefined
      onStop()
    }
    await Promise.all([...this.threads].map(async live => {
      live.retired = true
      await live.thread.terminate()
    }))
  }
}

/** Jobs run one at a time, in the order given. */
export class Mailbox<J> {
  private readonly jobs: J[] = []
  private draining = false

  /** `handle` may finish a job at once (returning nothing): the next one then starts in the same turn. */
  constructor (private readonly handle: (job: J) => Promise<void> | undefined) {}

  push (job: J): void {
    this.jobs.push(job)
  }

  /** Takes every job not yet run (to end them without running). */
  takeAll (): J[] {
    return this.jobs.splice(0)
  }

  /** Runs the jobs queued, and those queued meanwhile; a second call while one runs does nothing. */
  async drain (): Promise<void> {
    if (this.draining) return
    this.draining = true
    try {
      for (let job = this.jobs.shift(); job != null; job = this.jobs.shift()) {
        const running = this.handle(job)
        if (running != null) await running
      }
    } finally {
      this.draining = false
    }
  }
}
