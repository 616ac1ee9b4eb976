import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ContainerEngine, resolveEngineSocket } from '../../src/containers/container-engine.js'
import { LABELS } from '../../src/containers/container-host.js'

/**
 * The real container engine the tests run against (Podman's Docker-compatible
 * service, started by `scripts/container-engine.sh start`, which prints the
 * DOCKER_HOST to export). No engine is a loud failure, never a skip: CI always has one.
 */
export async function requireEngine (): Promise<{ engine: ContainerEngine, socket: string }> {
  const socket = resolveEngineSocket(undefined)
  if (socket == null) throw new Error('DOCKER_HOST is not set: the container tests need a real engine. Run: eval "$(scripts/container-engine.sh start)"')
  const engine = new ContainerEngine({ socketPath: socket })
  try {
    await engine.ping(5_000)
  } catch (err) {
    throw new Error(`no container engine answers at ${socket} (${err instanceof Error ? err.message : String(err)}). Run: eval "$(scripts/container-engine.sh start)"`)
  }
  return { engine, socket }
}

/** BeeMesh containers of one node (by its peer id), running or not. */
export async function containersOf (engine: ContainerEngine, peerId: string): Promise<Array<{ id: string, name: string, labels: Record<string, string>, running: boolean }>> {
  return await engine.list({ [LABELS.node]: peerId })
}

/** Removes every container the given nodes left behind (a SIGKILLed node leaves its containers running). */
export async function removeContainersOf (engine: ContainerEngine, peerIds: string[]): Promise<void> {
  for (const peerId of peerIds) {
    for (const c of await containersOf(engine, peerId).catch(() => [])) await engine.remove(c.id, { force: true }).catch(() => {})
  }
}

/**
 * A second Podman API service on a private socket (same storage as the shared
 * one), for tests that kill an engine under a node. `stop` kills it (SIGTERM);
 * `restart` starts it again on the same socket.
 */
export async function startPrivateEngine (): Promise<{ socket: string, stop: () => Promise<void>, restart: () => Promise<void>, close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-engine-'))
  const socket = join(dir, 'engine.sock')
  let child: ChildProcess | undefined
  const up = async (): Promise<void> => {
    const c = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { cwd: '/', stdio: 'ignore' })
    child = c
    const failed = new Promise<never>((_resolve, reject) => c.once('error', reject))
    const engine = new ContainerEngine({ socketPath: socket })
    const deadline = Date.now() + 20_000
    await Promise.race([failed, (async () => {
      for (;;) {
        try { await engine.alive(1_000); return } catch (err) {
          if (Date.now() > deadline) throw new Error(`the private podman service at ${socket} did not answer within 20 s: ${String(err)}`)
          await new Promise(resolve => setTimeout(resolve, 50))
        }
      }
    })()])
  }
  const stop = async (): Promise<void> => {
    const c = child
    if (c == null || c.exitCode != null || c.signalCode != null) return
    const exited = new Promise<void>(resolve => c.once('exit', () => { resolve() }))
    c.kill('SIGTERM')
    await exited
  }
  await up()
  return { socket, stop, restart: up, close: async () => { await stop(); await rm(dir, { recursive: true, force: true }) } }
}
