/**
 * What a node needs of TLS for its HTTP API (the certificates themselves are
 * made by src/policy/tls-issue.ts, on the machine holding the mesh CA key):
 * reading and checking `--tls-cert`/`--tls-key`, and telling loopback apart.
 */
import { X509Certificate as NodeX509 } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createSecureContext } from 'node:tls'
import { describeError, InvalidArgumentError } from '../errors.js'
import { TrustError } from './errors.js'

/** A PEM file's text; a TrustError naming the file when it is missing or unreadable. */
export async function readText (path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
    throw new TrustError('key-file', `${path}: ${missing ? `no such ${what}` : `cannot read ${what}: ${describeError(err)}`}`)
  }
}

/** The certificates of a PEM bundle, in order. */
export function splitPem (pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}

/** What a node serves with: its key and chain, and the CA at the chain's end (public, handed to clients). */
export interface ServingTls { cert: string, key: string, ca?: string }

/**
 * Reads `--tls-cert` and `--tls-key` and checks they make a usable TLS
 * identity (a certificate that matches the key), naming the flag and file.
 */
export async function loadServingTls (certFile: string, keyFile: string): Promise<ServingTls> {
  const cert = await readText(certFile, 'certificate (--tls-cert)')
  const key = await readText(keyFile, 'private key (--tls-key)')
  const chain = splitPem(cert)
  if (chain.length === 0) throw new InvalidArgumentError(`--tls-cert ${certFile}: no PEM certificate in it`)
  try {
    createSecureContext({ cert, key })
  } catch (err) {
    throw new InvalidArgumentError(`--tls-cert ${certFile} / --tls-key ${keyFile}: not a usable certificate and key pair (${describeError(err)})`)
  }
  const leaf = new NodeX509(chain[0]!)
  if (Date.parse(leaf.validTo) < Date.now()) throw new InvalidArgumentError(`--tls-cert ${certFile}: the certificate expired on ${new Date(leaf.validTo).toISOString()}; issue a new one with \`beemesh cert issue\``)
  const last = chain.at(-1)!
  const ca = chain.length > 1 && new NodeX509(last).ca ? last + '\n' : undefined
  return { cert, key, ...(ca != null ? { ca } : {}) }
}

/** Is `host` a loopback address or name (where plain HTTP may be allowed)? */
export function isLoopbackHost (host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1'
}

/** Is a peer address (socket.remoteAddress) loopback? */
export function isLoopbackAddress (address: string | undefined): boolean {
  if (address == null) return false
  return address === '::1' || /^(::ffff:)?127\./.test(address)
}
