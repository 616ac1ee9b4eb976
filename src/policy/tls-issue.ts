/**
 * Issuing (CLI side, never loaded by a node): the mesh's own certificate authority and the serving certificates of the
 * nodes' HTTP APIs (control API and Kubernetes API share one server).
 *
 * Node 20 cannot make X.509 certificates itself; @peculiar/x509 builds them
 * over WebCrypto. Every key is ECDSA P-256 (kubectl, Node and browsers all
 * accept it; Ed25519 serving certificates are refused by Chromium).
 *
 * Files: `ca.key` (PKCS#8 PEM, 0600, kept offline beside root.key) and `ca.crt`
 * (public) in the mesh's trust directory; a node's `<name>.crt` (its
 * certificate followed by the CA's, so the node can hand the CA to clients)
 * and `<name>.key` (0600).
 */
import { webcrypto, randomBytes } from 'node:crypto'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { describeError, InvalidArgumentError } from '../errors.js'
import { TrustError } from './errors.js'
import { readText } from './tls.js'

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const
const DAY = 24 * 60 * 60 * 1000
/** The CA lives as long as a mesh is likely to; serving certificates far less. */
export const CA_TTL_MS = 10 * 365 * DAY
export const DEFAULT_CERT_TTL_MS = 90 * DAY
/** Back-dating absorbs clock skew between the issuing machine and clients. */
const SKEW_MS = 5 * 60 * 1000

export const CA_KEY_FILE = 'ca.key'
export const CA_CERT_FILE = 'ca.crt'

export interface PemPair { certPem: string, keyPem: string }

function serial (): string {
  // 16 random bytes, top bit cleared so the DER integer stays positive.
  const b = randomBytes(16)
  b[0] = b[0]! & 0x7f
  return b.toString('hex')
}

async function keyToPem (key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY')
}

async function pemToKey (pem: string, what: string): Promise<webcrypto.CryptoKey> {
  try {
    const der = x509.PemConverter.decodeFirst(pem)
    return await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign'])
  } catch (err) {
    throw new TrustError('key-file', `${what}: not an ECDSA P-256 private key in PKCS#8 PEM (${describeError(err)})`)
  }
}

async function generatePair (): Promise<webcrypto.CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])
}

/** A new self-signed mesh CA: may sign serving certificates only (path length 0). */
export async function createMeshCa (meshName: string, { ttlMs = CA_TTL_MS, now = Date.now() } = {}): Promise<PemPair> {
  const keys = await generatePair()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=beemesh mesh CA ${meshName},O=beemesh`,
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + ttlMs),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
    ]
  })
  return { certPem: cert.toString('pem') + '\n', keyPem: await keyToPem(keys.privateKey) + '\n' }
}

const DNS_NAME = /^(?=.{1,253}$)([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/

/** Checks `--host` values: IP addresses or DNS names; the error names the bad one. */
export function checkHosts (hosts: string[]): string[] {
  if (hosts.length === 0) throw new InvalidArgumentError('--host: name at least one host name or IP address clients use to reach the API (e.g. --host 10.0.0.5 --host node1.example)')
  for (const h of hosts) {
    if (isIP(h) === 0 && !DNS_NAME.test(h)) throw new InvalidArgumentError(`--host must be an IP address or a DNS name, got "${h.slice(0, 80)}"`)
  }
  return [...new Set(hosts)]
}

/**
 * A serving certificate for `hosts` (its subject alternative names), signed by
 * the CA. The returned certificate PEM is the chain: the leaf, then the CA.
 */
export async function issueServingCert (ca: PemPair, hosts: string[], { commonName, ttlMs = DEFAULT_CERT_TTL_MS, now = Date.now() }: { commonName?: string, ttlMs?: number, now?: number } = {}): Promise<PemPair> {
  const names = checkHosts(hosts)
  const caCert = new x509.X509Certificate(ca.certPem)
  const caKey = await pemToKey(ca.keyPem, 'CA key')
  const keys = await generatePair()
  const notAfter = Math.min(now + ttlMs, caCert.notAfter.getTime())
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${commonName ?? names[0]!}`,
    issuer: caCert.subject,
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(notAfter),
    signingAlgorithm: SIGNING,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map(n => ({ type: isIP(n) !== 0 ? 'ip' as const : 'dns' as const, value: n }))),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
    ]
  })
  return { certPem: cert.toString('pem') + '\n' + ca.certPem, keyPem: await keyToPem(keys.privateKey) + '\n' }
}


async function writeMode (path: string, text: string, mode: number): Promise<void> {
  await writeFile(path, text, { mode })
  await chmod(path, mode)
}

/** Writes a certificate (0644) and its key (0600). */
export async function writePemPair (certFile: string, keyFile: string, pair: PemPair): Promise<void> {
  try {
    await writeMode(keyFile, pair.keyPem, 0o600)
    await writeMode(certFile, pair.certPem, 0o644)
  } catch (err) {
    throw new TrustError('key-file', `cannot write ${certFile} / ${keyFile}: ${describeError(err)}`)
  }
}

/** The mesh CA in a trust directory (ca.crt, ca.key). */
export async function readMeshCa (dir: string): Promise<PemPair> {
  const certPem = await readText(join(dir, CA_CERT_FILE), 'mesh CA certificate (made by `beemesh init`)')
  const keyPem = await readText(join(dir, CA_KEY_FILE), 'mesh CA key (made by `beemesh init`)')
  await pemToKey(keyPem, join(dir, CA_KEY_FILE))
  return { certPem, keyPem }
}

/** The mesh CA of `dir`, created there (ca.key 0600, ca.crt 0644) when it has none. */
export async function ensureMeshCa (dir: string, meshName: string): Promise<PemPair & { created: boolean }> {
  try {
    return { ...await readMeshCa(dir), created: false }
  } catch {}
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const ca = await createMeshCa(meshName)
  await writePemPair(join(dir, CA_CERT_FILE), join(dir, CA_KEY_FILE), ca)
  return { ...ca, created: true }
}

