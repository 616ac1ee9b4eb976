import type { ComponentLogger, Logger as Libp2pLogger } from '@libp2p/interface'

/**
 * The logging contract the transport and runtime depend on: a subset of pino's
 * interface, so tests and embedders can pass their own. The CLI passes pino.
 */
export interface LogFn {
  (obj: object, msg?: string): void
  (msg: string): void
}

export interface Logger {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
  child(bindings: Record<string, unknown>): Logger
}

const noop = (): void => {}

export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger
}

/**
 * libp2p's own debug logging, off: every libp2p component asks for a logger
 * when it is made, and libp2p's default makes a debug instance per component
 * and matches its name against DEBUG's patterns (about 15 ms of a node's
 * start). Without DEBUG in the environment none of them would print, so the
 * mesh passes this instead; with DEBUG set, libp2p's default logger is kept
 * (`DEBUG=libp2p:* beemesh node start` still traces libp2p).
 */
export const libp2pLoggerOff: ComponentLogger = (() => {
  const off: Libp2pLogger = Object.assign((): void => {}, { error: (): void => {}, trace: (): void => {}, enabled: false, newScope: (): Libp2pLogger => off })
  return { forComponent: () => off }
})()
