import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { describeError } from '../errors.js'
import { IdentityKeyError } from './errors.js'

export const IDENTITY_FILE = 'identity.key'

export interface Identity {
  privateKey: PrivateKey
  path: string
  created: boolean
}

/**
 * Loads the node's Ed25519 key from `<dataDir>/identity.key`, creating it (mode
 * 0600, directory 0700) on first use. The same data dir always gives the same
 * peer id. A key file that cannot be read or decoded is an error, never silently
 * replaced: replacing it would change the node's identity.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<Identity> {
  const path = join(dataDir, IDENTITY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new IdentityKeyError(path, `cannot read: ${describeError(err)}`, { cause: err })
    }
  }

  if (bytes != null) {
    let privateKey: PrivateKey
    try {
      privateKey = privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new IdentityKeyError(path, `corrupt key (${describeError(err)}); move it away to create a new identity`, { cause: err })
    }
    if (privateKey.type !== 'Ed25519') {
      throw new IdentityKeyError(path, `expected an Ed25519 key, found ${privateKey.type}`)
    }
    return { privateKey, path, created: false }
  }

  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const privateKey = await generateKeyPair('Ed25519')
    await writeFile(path, privateKeyToProtobuf(privateKey), { mode: 0o600, flag: 'wx' })
    await chmod(path, 0o600)
    return { privateKey, path, created: true }
  } catch (err) {
    throw new IdentityKeyError(path, `cannot create: ${describeError(err)}`, { cause: err })
  }
}
