import { pino } from 'pino'
import type { Logger } from '../transport/logger.js'
import { InvalidArgumentError } from '../errors.js'

import { LOG_LEVELS } from './defaults.js'

/** Structured JSON logs on stderr (stdout is for command output). */
export function createLogger (level: string, bindings: Record<string, unknown> = {}): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new InvalidArgumentError(`unknown log level "${level}"; use one of ${LOG_LEVELS.join(', ')}`)
  }
  return pino({ level, base: { pid: process.pid, ...bindings } }, pino.destination({ fd: 2, sync: true })) as unknown as Logger
}
