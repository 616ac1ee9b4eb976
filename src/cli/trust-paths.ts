/**
 * Where the CLI looks for trust material by default: shared by the trust
 * commands (which write it) and the API client (which reads it to sign tokens).
 */
import { homedir } from 'node:os'
import { join } from 'node:path'

/** Where the deployer key lives: `$BEEMESH_KEY`, else `~/.config/beemesh/deployer.key` (read at call time). */
export function DEFAULT_KEY_PATH (): string {
  return process.env.BEEMESH_KEY ?? join(homedir(), '.config/beemesh/deployer.key')
}

/** The trust directory `beemesh init` writes (root.key, policy.yaml, mesh.json), relative to the working directory. */
export const DEFAULT_TRUST_DIR = 'beemesh-trust'
