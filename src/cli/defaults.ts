/**
 * The CLI's defaults and the small argument parsers its command definitions
 * need. Every command's module is imported only when that command runs
 * (src/cli/main.ts), so what `beemesh --help` must know lives here, in a
 * module that imports nothing heavy: trust material paths (shared by the
 * trust commands, which write it, and the API client, which reads it to sign
 * tokens), data dirs, lifetimes and ports.
 */
import { homedir } from 'node:os'
import { join } from 'node:path'
import { InvalidArgumentError } from '../errors.js'

/** Where the deployer key lives: `$BEEMESH_KEY`, else `~/.config/beemesh/deployer.key` (read at call time). */
export function DEFAULT_KEY_PATH (): string {
  return process.env.BEEMESH_KEY ?? join(homedir(), '.config/beemesh/deployer.key')
}

/** The trust directory `beemesh init` writes (root.key, policy.yaml, mesh.json), relative to the working directory. */
export const DEFAULT_TRUST_DIR = 'beemesh-trust'

/** A node's data dir (identity key, database) unless --data-dir says otherwise. */
export const DEFAULT_DATA_DIR = join(homedir(), '.beemesh')
export const DEFAULT_MESH_NAME = 'beemesh'
/** A node's membership credential lasts this long unless --ttl says otherwise (a deployer's: 30d). */
export const DEFAULT_CREDENTIAL_TTL = '30d'
export const DEFAULT_TOKEN_TTL = '1h'
export const DEFAULT_CERT_TTL = '90d'
/** The token `beemesh ui` makes for the page from the deployer key. */
export const DEFAULT_UI_TOKEN_TTL = '8h'
/** The port of the inspector relay's server and of its WebSocket, as the library defaults them. */
export const DEFAULT_INSPECT_PORT = 8080
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const

export function parsePort (value: string, flag: string): number {
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`${flag} must be a port number from 0 to 65535, got "${value}"`)
  return port
}
