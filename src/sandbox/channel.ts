/**
 * The worker side of the channel to the node, the same for both ways a sandbox
 * worker runs: as a worker thread (`parentPort`, `workerData`) or as a confined
 * child process (confine.ts: Node's IPC channel on an inherited fd, advanced
 * serialisation, the init as the first message).
 */
import { writeFileSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

export interface ParentChannel<TIn, TOut> {
  post: (msg: TOut) => void
  onMessage: (listener: (msg: TIn) => void) => void
}

/** A message of the child's own: an uncaught exception, reported before the child exits (a thread's `error` event). */
export interface ChildFatal { type: '__sandbox-fatal', name: string, message: string }

/** A message of the child's own: it has booted and waits for its init (a warm sandbox is ready). */
export interface ChildWaiting { type: '__sandbox-waiting' }

export async function connectParent<TInit, TIn, TOut> (): Promise<{ init: TInit, channel: ParentChannel<TIn, TOut> }> {
  const port = parentPort
  if (port != null) {
    return { init: workerData as TInit, channel: { post: msg => { port.postMessage(msg) }, onMessage: listener => { port.on('message', listener) } } }
  }
  const send = process.send?.bind(process)
  if (send == null) throw new Error('the sandbox worker must run in a worker thread or a sandbox child process')
  process.on('disconnect', () => { process.exit(0) })
  // the node may have gone before this listener was set (a warm child booting as its node dies)
  if (!process.connected) process.exit(0)
  process.on('uncaughtException', (err: unknown) => {
    const fatal: ChildFatal = { type: '__sandbox-fatal', name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) }
    send(fatal, undefined, undefined, () => { process.exit(1) })
  })
  let listener: ((msg: TIn) => void) | undefined
  const early: TIn[] = []
  const init = await new Promise<TInit>(resolve => {
    let first = true
    const withArtifact = (msg: unknown): TInit => {
      // a confined child is started blank: its artifact comes with the init, into its own tmpfs
      const m = msg as { artifactPath?: unknown, artifactCode?: unknown }
      if (m.artifactCode instanceof Uint8Array && typeof m.artifactPath === 'string') {
        writeFileSync(m.artifactPath, m.artifactCode, { mode: 0o400 })
        delete m.artifactCode
      }
      return msg as TInit
    }
    // one listener for the whole life of the child: it also keeps the channel (and the child) alive
    process.on('message', (msg: unknown) => {
      if (first) {
        first = false
        resolve(withArtifact(msg))
      } else if (listener != null) {
        listener(msg as TIn)
      } else {
        early.push(msg as TIn)
      }
    })
    // booted, loaded and blank: the node may now hand this child its workload
    const waiting: ChildWaiting = { type: '__sandbox-waiting' }
    send(waiting)
  })
  return {
    init,
    channel: {
      post: msg => { send(msg) },
      onMessage: l => {
        listener = l
        for (const msg of early.splice(0)) l(msg)
      }
    }
  }
}
