import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createActor, fromPromise, waitFor } from 'xstate'
import { nodeMachine, nodeStateName } from '../../src/machines/node-machine.js'

function actorWith (start: () => Promise<void>, stop: () => Promise<void> = async () => {}) {
  return createActor(nodeMachine.provide({ actors: { startNode: fromPromise(start), stopNode: fromPromise(stop) } }))
}

test('starting → running.isolated → connected → isolated by peer count', async () => {
  const actor = actorWith(async () => {}).start()
  await waitFor(actor, s => s.matches('running'), { timeout: 1000 })
  assert.is(nodeStateName(actor.getSnapshot().value), 'running.isolated')
  actor.send({ type: 'node.peerConnected', peerCount: 1 })
  actor.send({ type: 'node.peerConnected', peerCount: 2 })
  assert.is(nodeStateName(actor.getSnapshot().value), 'running.connected')
  assert.is(actor.getSnapshot().context.peerCount, 2)
  actor.send({ type: 'node.peerDisconnected', peerCount: 1 })
  assert.is(nodeStateName(actor.getSnapshot().value), 'running.connected')
  actor.send({ type: 'node.peerDisconnected', peerCount: 0 })
  assert.is(nodeStateName(actor.getSnapshot().value), 'running.isolated')
})

test('a failed start ends in failed with the reason', async () => {
  const actor = actorWith(async () => { throw new Error('port taken') }).start()
  const s = await waitFor(actor, s => s.status === 'done', { timeout: 1000 })
  assert.ok(s.matches('failed'))
  assert.is(s.context.error, 'port taken')
})

test('stop runs the stop effect and ends in stopped, even if it fails', async () => {
  let stopped = 0
  const actor = actorWith(async () => {}, async () => { stopped++; throw new Error('already closed') }).start()
  await waitFor(actor, s => s.matches('running'), { timeout: 1000 })
  actor.send({ type: 'node.stopRequested' })
  const s = await waitFor(actor, s => s.status === 'done', { timeout: 1000 })
  assert.ok(s.matches('stopped'))
  assert.is(stopped, 1)
  assert.is(s.context.error, 'already closed')
})

test('the machine module does no I/O: no node:, level, libp2p or dockerode imports', async () => {
  const { readdir, readFile } = await import('node:fs/promises')
  const dir = new URL('../../src/machines/', import.meta.url)
  for (const f of await readdir(dir)) {
    const src = await readFile(new URL(f, dir), 'utf8')
    assert.not.match(src, /from '(node:|level|libp2p|@libp2p|dockerode)/, `${f} imports an I/O module`)
  }
})

test.run()
