import { spawn } from 'node:child_process'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ROOT } from './helpers/processes.js'

async function runNode (args: string[]): Promise<{ code: number | null, out: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
  return { code, out }
}

test('Node 20 lacks Promise.withResolvers until the polyfill loads (the reason it exists)', async () => {
  const major = Number(process.versions.node.split('.')[0])
  const bare = await runNode(['-e', 'process.stdout.write(typeof Promise.withResolvers)'])
  assert.is(bare.out, major >= 22 ? 'function' : 'undefined')
})

test('importing the transport installs Promise.withResolvers before libp2p loads', async () => {
  const r = await runNode(['--input-type=module', '-e', "await import('./dist/transport/mesh-node.js'); const { promise, resolve } = Promise.withResolvers(); resolve(7); process.stdout.write(String(await promise))"])
  assert.is(r.code, 0, r.out)
  assert.is(r.out, '7')
})

test('the beemesh bin loads the polyfill first and runs', async () => {
  const r = await runNode(['bin/beemesh.js', '--version'])
  assert.is(r.code, 0, r.out)
  assert.match(r.out, /^\d+\.\d+\.\d+/)
})

test('this test process has the polyfill (tests run with --import src/polyfills.ts)', () => {
  assert.type(Promise.withResolvers, 'function')
  const { promise, resolve } = Promise.withResolvers<number>()
  resolve(1)
  return promise.then(v => { assert.is(v, 1) })
})

test.run()
