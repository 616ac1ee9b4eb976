/**
 * `beemesh up`, the embedded default that `npm start` runs: N node processes on
 * loopback, a ready line once each sees N-1 peers, none left behind on Ctrl-C.
 */
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cli, startCli, tempDir, waitUntil } from './helpers/processes.js'

/**
 * The lowest ephemeral port. A range picked for the API must lie below it:
 * the nodes' own outgoing connections and `/tcp/0` listeners take ephemeral
 * ports, and one once took node-2's API port between this check and its start.
 */
async function ephemeralLow (): Promise<number> {
  try {
    return Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0]) || 32_768
  } catch {
    return 32_768
  }
}

/** A base port whose next `count` ports are free right now, below the ephemeral range. */
async function freePortRange (count: number): Promise<number> {
  const low = 20_000
  const high = Math.max(low + 1_000, (await ephemeralLow()) - count)
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = low + Math.floor(Math.random() * (high - low))
    const servers = []
    let ok = true
    for (let i = 0; i < count && ok; i++) {
      const server = createServer()
      ok = await new Promise<boolean>(resolve => {
        server.once('error', () => { resolve(false) })
        server.listen(base + i, '127.0.0.1', () => { resolve(true) })
      })
      if (ok) servers.push(server)
    }
    await Promise.all(servers.map(async s => await new Promise(resolve => s.close(resolve))))
    if (ok) return base
  }
  throw new Error('no free port range')
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test('up --nodes 3: ready line, 2 peers each, and Ctrl-C (SIGINT) stops every node', async () => {
  const base = await freePortRange(3)
  const up = startCli(['up', '--nodes', '3', '--api-port', String(base), '--data-dir', await tempDir()])
  const ready = await up.waitForOutput(/mesh ready: 3 nodes in [\d.]+s\n((?:\s+node-\d+\s+\S+\s+\S+\n){3})/, { timeoutMs: 15_000 })
  const urls = [...ready[1]!.matchAll(/(http:\/\/\S+)/g)].map(m => m[1])
  assert.equal(urls, [0, 1, 2].map(i => `http://127.0.0.1:${base + i}`))

  const peers = await cli(['peers', '-o', 'json', '--api', `http://127.0.0.1:${base}`])
  assert.is(peers.code, 0, peers.stderr)
  assert.is(JSON.parse(peers.stdout).length, 2)

  const pids: number[] = []
  for (const url of urls) {
    const s = await cli(['status', '-o', 'json', '--api', url!])
    assert.is(s.code, 0, s.stderr)
    pids.push(JSON.parse(s.stdout).pid)
  }
  assert.ok(pids.every(isAlive))

  up.child.kill('SIGINT')
  assert.is(await up.exited, 0)
  assert.match(up.stderr(), /all nodes stopped/)
  for (const pid of pids) assert.not.ok(isAlive(pid), `node process ${pid} should be gone`)
})

test('up reports a node that cannot start (API port taken) and leaves nothing running', async () => {
  const base = await freePortRange(2)
  const blocker = createServer()
  await new Promise<void>(resolve => blocker.listen(base + 1, '127.0.0.1', resolve))
  try {
    const dir = await tempDir()
    const r = await cli(['up', '--nodes', '2', '--api-port', String(base), '--data-dir', dir], { timeoutMs: 30_000 })
    assert.is(r.code, 1)
    assert.match(r.stderr, new RegExp(`node-1 exited \\(exit code 1\\) before it was ready: beemesh: error: cannot serve the API on 127\\.0\\.0\\.1:${base + 1}: address already in use`))
    const after = await cli(['status', '--api', `http://127.0.0.1:${base}`])
    assert.is(after.code, 1, 'node-0 must have been stopped')
  } finally {
    blocker.close()
  }
})

test('up --example (what npm start runs): the pipeline runs on 3 nodes and events flow through both actors', async () => {
  const base = await freePortRange(3)
  const up = startCli(['up', '--nodes', '3', '--api-port', String(base), '--data-dir', await tempDir(), '--example', 'examples/pipeline'])
  await up.waitForOutput(/mesh ready: 3 nodes/, { timeoutMs: 15_000 })
  const applied = await up.waitForOutput(/applied \S*fulfil\.ts as default\/fulfil[^\n]*\n[^\n]*applied \S*ingest\.ts as default\/ingest[^\n]*replica 0 → node-\d, replica 1 → node-\d/, { timeoutMs: 30_000 })
  assert.ok(applied != null)
  // The same order shows up in both actors' logs (printed workload by workload, so in either order).
  const order = await waitUntil(() => {
    const out = up.stdout()
    const priced = [...out.matchAll(/ingest\s+replica \d on node-\d\s+priced order (\d+)/g)].map(m => m[1])
    return priced.find(n => new RegExp(`fulfil\\s+replica \\d on node-\\d\\s+fulfilled order ${n ?? ''} `).test(out))
  }, { timeoutMs: 30_000, what: 'an order priced by ingest and fulfilled by fulfil' })
  assert.ok(Number(order) >= 1)
  const list = await cli(['get', 'workloads', '-o', 'json', '--api', `http://127.0.0.1:${base + 2}`])
  const workloads = JSON.parse(list.stdout) as Array<{ name: string, ready: number }>
  assert.equal(workloads.map(w => [w.name, w.ready]), [['fulfil', 2], ['ingest', 2]])
  up.child.kill('SIGINT')
  assert.is(await up.exited, 0)
})

test('up rejects a bad --nodes value', async () => {
  const r = await cli(['up', '--nodes', 'three'])
  assert.is(r.code, 2)
  assert.match(r.stderr, /--nodes must be a whole number/)
})

test.run()
