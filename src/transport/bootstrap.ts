import { TypedEventEmitter, type AbortOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { describeError } from '../errors.js'
import type { Logger } from './logger.js'

export interface BootstrapRetry {
  address: string
  attempt: number
  delayMs: number
  error: string
}

export interface BootstrapEvents {
  'bootstrap:connected': CustomEvent<string>
  'bootstrap:retry': CustomEvent<BootstrapRetry>
}

export interface BootstrapperInit {
  addrs: Multiaddr[]
  dial(ma: Multiaddr, options: AbortOptions): Promise<void>
  connectedTo(peerId: string): boolean
  peerCount(): number
  logger: Logger
  /** First retry delay; doubles up to maxDelayMs. */
  initialDelayMs?: number
  maxDelayMs?: number
  dialTimeoutMs?: number
  /** After a dial, how long the peer has to admit this node (connectedTo turns true) before the dial counts as failed. */
  admissionWaitMs?: number
}

/**
 * Joins the mesh through the bootstrap list and keeps trying, with exponential
 * backoff, until each bootstrap peer is reached once or the node has peers
 * some other way. When the node later loses every peer it starts over, so a
 * node that was cut off rejoins by itself. A dial that succeeds is not yet a
 * peer: a busy bootstrap peer may still fail to admit it and hang up, so a
 * dial counts only once the peer admitted this node (admissionWaitMs), and a
 * watchdog (every maxDelayMs) starts over when no dial is under way and the
 * node has no admitted peer (100 nodes on 2 cores left a fifth of them alone
 * for ten minutes when a successful dial ended the retries).
 */
export class Bootstrapper extends TypedEventEmitter<BootstrapEvents> {
  private readonly init: Required<Omit<BootstrapperInit, 'logger'>> & { logger: Logger }
  private controller?: AbortController
  private running = false
  /** Dial loops under way (one per bootstrap address). */
  private dialing = 0
  private watchdog?: NodeJS.Timeout

  constructor (init: BootstrapperInit) {
    super()
    this.init = { initialDelayMs: 250, maxDelayMs: 15_000, dialTimeoutMs: 5_000, admissionWaitMs: 3_000, ...init }
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.controller = new AbortController()
    const signal = this.controller.signal
    for (const ma of this.init.addrs) {
      void this.keepDialing(ma, signal)
    }
    this.watchdog = setInterval(() => {
      if (this.dialing > 0 || this.init.peerCount() > 0) return
      this.init.logger.warn({ bootstrap: this.init.addrs.length }, 'no admitted peer and no bootstrap dial under way: dialling the bootstrap list again')
      this.restart()
    }, this.init.maxDelayMs)
    this.watchdog.unref()
  }

  stop (): void {
    this.running = false
    clearInterval(this.watchdog)
    this.controller?.abort()
  }

  /** Called on every peer disconnect: with no peers left, rejoin through the bootstrap list. */
  onPeerLost (): void {
    if (this.controller?.signal.aborted === true || !this.running) return
    if (this.init.peerCount() > 0) return
    this.restart()
  }

  private restart (): void {
    if (!this.running) return
    this.controller?.abort()
    this.controller = new AbortController()
    const signal = this.controller.signal
    for (const ma of this.init.addrs) void this.keepDialing(ma, signal)
  }

  private async keepDialing (ma: Multiaddr, signal: AbortSignal): Promise<void> {
    this.dialing++
    try {
      await this.dialUntilConnected(ma, signal)
    } finally {
      this.dialing--
    }
  }

  /** Resolves true once the peer admitted this node, false after admissionWaitMs (or when stopped). */
  private async admitted (peerId: string, signal: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + this.init.admissionWaitMs
    while (!this.init.connectedTo(peerId)) {
      if (signal.aborted || Date.now() >= deadline) return false
      await sleep(50, signal)
    }
    return true
  }

  private async dialUntilConnected (ma: Multiaddr, signal: AbortSignal): Promise<void> {
    const peerId = ma.getComponents().findLast(c => c.name === 'p2p')?.value ?? ''
    let delay = this.init.initialDelayMs
    for (let attempt = 1; !signal.aborted; attempt++) {
      if (this.init.connectedTo(peerId)) {
        this.safeDispatchEvent('bootstrap:connected', { detail: ma.toString() })
        return
      }
      try {
        await this.init.dial(ma, { signal: AbortSignal.any([signal, AbortSignal.timeout(this.init.dialTimeoutMs)]) })
        // Connected is not joined: a busy bootstrap peer may fail to admit this node and hang up.
        if (!await this.admitted(peerId, signal)) throw new Error(`connected, but not admitted within ${this.init.admissionWaitMs} ms`)
        this.init.logger.info({ address: ma.toString() }, 'connected to bootstrap peer')
        this.safeDispatchEvent('bootstrap:connected', { detail: ma.toString() })
        return
      } catch (err) {
        if (signal.aborted) return
        // Another way in worked (another bootstrap peer, or one it led to): the mesh is joined, and
        // discovery finds the rest. Retrying would only add to the load of a busy bootstrap peer,
        // which every newcomer dials (100 nodes on 2 cores: thousands of retries at 3 of them).
        if (this.init.peerCount() > 0) {
          this.init.logger.info({ address: ma.toString(), err: describeError(err) }, 'bootstrap peer unreachable, but the mesh is joined through others: not retrying it')
          return
        }
        const error = describeError(err)
        this.init.logger.warn({ address: ma.toString(), attempt, retryInMs: delay, err: error }, `bootstrap peer ${ma.toString()} unreachable, retrying in ${(delay / 1000).toFixed(1)}s`)
        this.safeDispatchEvent('bootstrap:retry', { detail: { address: ma.toString(), attempt, delayMs: delay, error } })
        await sleep(delay, signal)
        delay = Math.min(delay * 2, this.init.maxDelayMs)
      }
    }
  }
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const timer = setTimeout(done, ms)
    function done (): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
