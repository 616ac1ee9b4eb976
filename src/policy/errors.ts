import { BeeMeshError } from '../errors.js'

/**
 * A policy document that cannot be parsed, does not validate, or replays an old
 * version. The message is `<source>:<line>:<column>: <field>: <problem>`.
 */
export class PolicyError extends BeeMeshError {
  constructor (readonly source: string, readonly detail: string, options?: ErrorOptions) {
    super(`${source}:${detail}`, options)
    this.name = 'PolicyError'
  }
}

export type EnvelopeRefusal = 'malformed' | 'wrong-domain' | 'bad-signature' | 'stale' | 'future' | 'replayed' | 'overloaded'

/** A signed message refused by `open` (envelope.ts): `reason` says which check failed, the message names the problem. */
export class EnvelopeError extends BeeMeshError {
  constructor (readonly reason: EnvelopeRefusal, message: string) {
    super(message)
    this.name = 'EnvelopeError'
  }
}

export type TrustRefusal = 'malformed' | 'key-file' | 'unknown-issuer' | 'bad-signature' | 'expired' | 'not-yet-valid' | 'wrong-subject' | 'unsigned' | 'not-a-member' | 'denied' | 'wrong-audience' | 'unknown-key' | 'revoked'

/** A key, credential, token, signed policy or manifest signature that does not hold: `reason` says which check failed. */
export class TrustError extends BeeMeshError {
  constructor (readonly reason: TrustRefusal, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'TrustError'
  }
}
