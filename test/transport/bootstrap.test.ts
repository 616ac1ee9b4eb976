/**
 * The bootstrapper on its own (src/transport/bootstrap.ts), with a dial
 * function the test controls: no socket. A real mesh joining through it is
 * covered by every multi-process test; this checks the case a busy mesh
 * produced: a dial that succeeds but is never admitted.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { multiaddr } from '@multiformats/multiaddr'
import { Bootstrapper } from '../../src/transport/bootstrap.js'
import { silentLogger } from '../../src/transport/logger.js'

const SEED = multiaddr('/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWRm8J3iL796zPFi2EtGGtUJn58AG67gcqzMFHZnnsTzqD')

/** Resolves once `check` holds, polling every few milliseconds; fails after `ms`. */
async function until (check: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

test('a dial that succeeds but is never admitted counts as failed: the node dials again, and stops once it has a peer', async () => {
  let dials = 0
  let peers = 0
  const b = new Bootstrapper({
    addrs: [SEED],
    // The connection opens (the dial resolves), then the bootstrap peer fails to admit it: no peer.
    dial: async () => { dials++ },
    connectedTo: () => false,
    peerCount: () => peers,
    logger: silentLogger,
    initialDelayMs: 10,
    maxDelayMs: 40,
    admissionWaitMs: 20
  })
  b.start()
  try {
    await until(() => dials >= 3, 'the bootstrap peer to be dialled again, twice')
    peers = 1
    const settled = dials
    // Several watchdog periods with a peer: no more dials.
    await new Promise(resolve => setTimeout(resolve, 200))
    assert.ok(dials <= settled + 1, `no dials once the node has a peer (${dials - settled} more)`)
  } finally {
    b.stop()
  }
})

test('a dial the peer admits a moment later ends the retries: one dial, and "connected" once', async () => {
  let dials = 0
  let admitted = false
  const connected: string[] = []
  const b = new Bootstrapper({
    addrs: [SEED],
    dial: async () => { dials++; setTimeout(() => { admitted = true }, 30) },
    connectedTo: () => admitted,
    peerCount: () => admitted ? 1 : 0,
    logger: silentLogger,
    initialDelayMs: 10,
    maxDelayMs: 40,
    admissionWaitMs: 2_000
  })
  b.addEventListener('bootstrap:connected', evt => { connected.push(evt.detail) })
  b.start()
  try {
    await until(() => connected.length > 0, 'bootstrap:connected')
    assert.is(dials, 1)
    assert.equal(connected, [SEED.toString()])
  } finally {
    b.stop()
  }
})

test('failed dials back off and are not doubled by the watchdog; stop ends them', async () => {
  let dials = 0
  const b = new Bootstrapper({
    addrs: [SEED],
    dial: async () => { dials++; throw new Error('connect ECONNREFUSED') },
    connectedTo: () => false,
    peerCount: () => 0,
    logger: silentLogger,
    initialDelayMs: 20,
    maxDelayMs: 40
  })
  b.start()
  await until(() => dials >= 4, 'four dials')
  // One loop under way: 20, 40, 40, 40 ms apart, so about 6 dials in 250 ms; two loops would make about twice that.
  const t0 = Date.now()
  const before = dials
  await new Promise(resolve => setTimeout(resolve, 250))
  const rate = (dials - before) / ((Date.now() - t0) / 40)
  assert.ok(rate <= 1.5, `one dial loop, not more (${dials - before} dials in ${Date.now() - t0} ms)`)
  b.stop()
  const stopped = dials
  await new Promise(resolve => setTimeout(resolve, 120))
  assert.ok(dials <= stopped + 1, 'stop ends the dials')
})

test.run()
