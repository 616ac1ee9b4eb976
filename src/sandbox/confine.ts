/**
 * Workload code confined by the OS: a sandbox worker (worker.ts,
 * machine-worker.ts) runs as a child process started through bubblewrap:
 *
 * - an unprivileged uid (65534; when the node runs as root, bwrap itself is
 *   started as 65534, so the sandbox is not root on the host either), in its
 *   own user, mount, pid, network, ipc and uts namespaces (`--unshare-all`: no
 *   network at all; the node's pid does not exist in its pid namespace);
 * - a file system of the node binary and its libraries, read-only, a private
 *   tmpfs at /tmp (its only writable place, bounded), and one file copied in
 *   read-only: the worker entry (bundled once per node process, so no
 *   node_modules and none of the node's files are visible). The artifact
 *   comes with the init over IPC and is written into the sandbox's tmpfs, so
 *   a child can be started (warm) before its workload is known;
 * - an empty environment (`--clearenv`) but for Node's IPC channel variables;
 * - rlimits (open files, file size, no core dumps) and a V8 heap limit from
 *   the workload's memory request;
 * - inside, Node's permission model as a second layer: reads only of
 *   /sandbox, writes only of /tmp, no child processes, no workers, no addons.
 *
 * Capabilities (publish, call, fetch, log) are relayed by the node over the
 * inherited IPC channel (Node's child_process channel on fd 3, advanced
 * serialisation, so messages keep structured-clone semantics), never a port.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, lstatSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { packagePath } from '../paths.js'
import type { ChildFatal, ChildWaiting } from './channel.js'

import type { SandboxMode } from '../workloads/views.js'

export type { Isolation, NodeIsolation, SandboxMode } from '../workloads/views.js'

/** The node's sandbox mode: confined where possible; otherwise worker threads with `allowUnconfined`, refusal without. */
export function sandboxMode (allowUnconfined: boolean): SandboxMode {
  const h = hostConfinement()
  if (h.mode === 'confined') return { host: 'confined', isolation: 'confined' }
  return { host: 'unconfined', isolation: allowUnconfined ? 'thread' : 'refused', ...(h.reason != null ? { reason: h.reason } : {}) }
}

/** What this host can do: `confined` when bubblewrap can start a confined child here. */
export interface HostConfinement {
  mode: 'confined' | 'unconfined'
  /** Why the host cannot confine (unconfined only). */
  reason?: string
  bwrap?: string
  /** The host uid bwrap runs as (65534 when the node is root). */
  uid?: number
}

/** Where the sandbox sees its files. */
export const SANDBOX_DIR = '/sandbox'
export const SANDBOX_ENTRY = `${SANDBOX_DIR}/worker.mjs`
/** The unprivileged uid and gid of the sandbox ("nobody"). */
const NOBODY = 65534
/** Scratch space in /tmp, per sandbox. */
const SCRATCH_BYTES = 64 * 1024 * 1024
const MAX_OPEN_FILES = 256

const BWRAP_CANDIDATES = ['/usr/bin/bwrap', '/bin/bwrap', '/usr/local/bin/bwrap']
const PRLIMIT_CANDIDATES = ['/usr/bin/prlimit', '/bin/prlimit']

function findExecutable (candidates: string[]): string | undefined {
  return candidates.find(p => existsSync(p))
}

/** Read-only binds of the node binary and the shared libraries it needs (merged /usr symlinks kept as symlinks). */
function systemBinds (): string[] {
  const args: string[] = []
  for (const dir of ['/usr/lib', '/usr/lib64', '/lib', '/lib64']) {
    let st
    try {
      st = lstatSync(dir)
    } catch {
      continue
    }
    if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir)
    else if (st.isDirectory()) args.push('--ro-bind', dir, dir)
  }
  const node = realpathSync(process.execPath)
  args.push('--ro-bind', node, node)
  return args
}

/** The bwrap arguments up to the command, without the two data files (exported for the benchmark). */
export function confinementArgs (): string[] {
  return [
    '--unshare-all', '--die-with-parent', '--new-session',
    '--uid', String(NOBODY), '--gid', String(NOBODY),
    ...systemBinds(),
    '--proc', '/proc', '--dev', '/dev',
    '--size', String(SCRATCH_BYTES), '--tmpfs', '/tmp',
    '--clearenv', '--chdir', '/tmp'
  ]
}

function prlimitArgs (prlimit: string | undefined): string[] {
  return prlimit == null ? [] : [prlimit, `--nofile=${MAX_OPEN_FILES}`, '--core=0', `--fsize=${SCRATCH_BYTES}`, '--']
}

let host: HostConfinement | undefined

/**
 * Probes once per process whether bubblewrap can start a confined node here
 * (as uid 65534 when this process is root, as itself otherwise: that needs
 * unprivileged user namespaces). `BEEMESH_SANDBOX=unconfined` forces the
 * unconfined answer (tests of the fallback).
 */
export function hostConfinement (): HostConfinement {
  if (host != null) return host
  host = probe()
  return host
}

function probe (): HostConfinement {
  if (process.env.BEEMESH_SANDBOX === 'unconfined') return { mode: 'unconfined', reason: 'BEEMESH_SANDBOX=unconfined is set' }
  if (process.platform !== 'linux') return { mode: 'unconfined', reason: `confinement needs Linux (this is ${process.platform})` }
  const bwrap = findExecutable(BWRAP_CANDIDATES)
  if (bwrap == null) return { mode: 'unconfined', reason: 'bubblewrap is not installed (apt-get install -y bubblewrap)' }
  const uids = process.getuid?.() === 0 ? [NOBODY] : [process.getuid?.() ?? NOBODY]
  let last = ''
  for (const uid of uids) {
    const r = spawnSync(bwrap, [...confinementArgs(), process.execPath, '-e', 'process.exit(process.getuid() === 65534 ? 0 : 3)'], {
      env: {},
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 10_000,
      ...(uid !== process.getuid?.() ? { uid, gid: NOBODY } : {})
    })
    if (r.status === 0) return { mode: 'confined', bwrap, uid }
    last = r.error != null ? r.error.message : (r.stderr?.toString().trim() || `exit code ${String(r.status)}`)
  }
  return { mode: 'unconfined', reason: `bubblewrap cannot start a confined process here: ${last}` }
}

export type WorkerFile = 'worker' | 'machine-worker'

let bundleDir: string | undefined
const bundles = new Map<WorkerFile, string>()

/**
 * The worker entry as one self-contained ESM file (its imports, xstate
 * included, bundled in): `dist/sandbox/<file>.bundle.mjs` when built,
 * else bundled once per process into a private temp dir. It is copied into
 * each sandbox: the sandbox needs none of the node's files.
 */
export function workerBundle (file: WorkerFile): string {
  const found = bundles.get(file)
  if (found != null) return found
  // built with dist/ (scripts/build.mjs); from source it is bundled here, once
  const prebuilt = packagePath('dist', 'sandbox', `${file}.bundle.mjs`)
  if (existsSync(prebuilt)) {
    bundles.set(file, prebuilt)
    return prebuilt
  }
  const entry = packagePath('src', 'sandbox', `${file}.ts`)
  // esbuild is loaded only here, when no built bundle exists (a source checkout before `npm run build`)
  const { buildSync } = createRequire(import.meta.url)('esbuild') as typeof import('esbuild')
  const out = buildSync({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'node', target: 'node20', write: false, logLevel: 'silent' })
  const code = out.outputFiles[0]?.contents
  if (code == null) throw new Error(`bundling the sandbox entry ${entry} produced no output`)
  if (bundleDir == null) {
    const dir = mkdtempSync(join(tmpdir(), 'beemesh-sandbox-'))
    bundleDir = dir
    process.once('exit', () => { rmSync(dir, { recursive: true, force: true }) })
  }
  const path = join(bundleDir, `${file}.mjs`)
  writeFileSync(path, code, { mode: 0o600 })
  bundles.set(file, path)
  return path
}

export interface ConfinedChild {
  child: ChildProcess
  /** Set when the child reported an uncaught exception before exiting. */
  fatal: () => Error | undefined
  /** True once stderr showed V8's fatal out-of-memory report. */
  outOfMemory: () => boolean
  /** Resolves once the child has booted and waits for its init (or has exited). */
  booted: Promise<void>
}

/** Where a confined child writes the artifact it is sent (its own tmpfs), and imports it from. */
export const SANDBOX_ARTIFACT = '/tmp/.beemesh-artifact.mjs'

/**
 * The first message to a confined child: its init, and the artifact's bytes,
 * which the child writes into its own tmpfs (channel.ts) before loading it.
 * The child is started blank (no artifact at spawn), so a warm one can be
 * started before anyone knows which workload it will run.
 */
export interface ConfinedInit { artifactCode: Uint8Array }

/**
 * Starts a blank confined child for `file` with the IPC channel on fd 3: it
 * boots Node, loads the worker entry and waits for its init (the caller's
 * first message, with `artifactCode`). Taken from the warm pool when one is
 * ready (WarmSandboxes). Throws when the host cannot confine.
 * `nodePermissions: false` leaves out Node's permission model (tests of the
 * OS layer alone).
 */
export function spawnConfined (file: WorkerFile, memoryLimitMb: number, { nodePermissions = true }: { nodePermissions?: boolean } = {}): ConfinedChild {
  const heap = Math.max(16, Math.floor(memoryLimitMb))
  const warm = nodePermissions ? warmPool.take(file, heap) : undefined
  return warm ?? startBlank(file, heap, nodePermissions)
}

function startBlank (file: WorkerFile, heap: number, nodePermissions: boolean): ConfinedChild {
  const h = hostConfinement()
  if (h.mode !== 'confined' || h.bwrap == null) throw new Error(`this host cannot confine workload code: ${h.reason ?? 'unknown reason'}`)
  const entryFd = openSync(workerBundle(file), 'r')
  const args = [
    ...confinementArgs(),
    '--ro-bind-data', '4', SANDBOX_ENTRY,
    '--remount-ro', '/',
    '--setenv', 'NODE_CHANNEL_FD', '3',
    '--setenv', 'NODE_CHANNEL_SERIALIZATION_MODE', 'advanced',
    process.execPath,
    `--max-old-space-size=${heap}`,
    `--max-semi-space-size=${Math.min(16, Math.max(1, Math.floor(heap / 16)))}`,
    // the second layer; off only in the test that shows the OS layer holds on its own
    ...(nodePermissions ? ['--experimental-permission', `--allow-fs-read=${SANDBOX_DIR}/*`, '--allow-fs-read=/tmp/*', '--allow-fs-write=/tmp/*'] : []),
    '--disable-warning=ExperimentalWarning',
    SANDBOX_ENTRY
  ]
  const prlimit = prlimitArgs(findExecutable(PRLIMIT_CANDIDATES))
  const [command, ...rest] = prlimit.length > 0 ? [...prlimit, h.bwrap, ...args] : [h.bwrap, ...args]
  let child: ChildProcess
  try {
    child = spawn(command as string, rest, {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc', entryFd],
      serialization: 'advanced',
      env: {},
      ...(h.uid != null && h.uid !== process.getuid?.() ? { uid: h.uid, gid: NOBODY } : {})
    })
  } finally {
    closeSync(entryFd)
  }
  let fatal: Error | undefined
  let oom = false
  let onBooted!: () => void
  const booted = new Promise<void>(resolve => { onBooted = resolve })
  child.once('close', () => { onBooted() })
  child.on('message', (msg: unknown) => {
    const m = msg as Partial<ChildFatal> | Partial<ChildWaiting> | null
    if (m?.type === '__sandbox-fatal') {
      const f = m as ChildFatal
      fatal ??= Object.assign(new Error(String(f.message)), { name: String(f.name) })
    } else if (m?.type === '__sandbox-waiting') {
      onBooted()
    }
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    if (!oom && /heap out of memory|Reached heap limit/.test(chunk.toString('latin1'))) oom = true
  })
  return { child, fatal: () => fatal, outOfMemory: () => oom, booted }
}

/** The pids below `root` in the process tree (from /proc), deepest last. */
export function descendants (root: number): number[] {
  const children = new Map<number, number[]>()
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return []
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(entry))
      children.set(ppid, list)
    } catch {
      // ended while listing
    }
  }
  const out: number[] = []
  const queue = [root]
  while (queue.length > 0) {
    for (const c of children.get(queue.shift() as number) ?? []) { out.push(c); queue.push(c) }
  }
  return out
}

/**
 * Ends a confined sandbox and everything bubblewrap started for it. Killing
 * bwrap alone is not enough: its own child (the namespace's init, running as
 * 65534) has lost the parent-death signal with its credentials, and would live
 * on, holding the IPC channel and the output pipes (seen: a warm child left
 * running after its pool was released). So the tree is read first, and every
 * process in it killed.
 */
export function endConfined (child: ChildProcess): void {
  if (child.exitCode != null || child.signalCode != null) return
  const below = child.pid != null ? descendants(child.pid) : []
  child.kill('SIGKILL')
  for (const pid of below) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

/** A warm child's key: the worker entry and the heap limit it was started with. */
type WarmKey = `${WorkerFile}:${number}`

interface WarmChild { sandbox: ConfinedChild, timer: NodeJS.Timeout }

/**
 * Pre-started blank sandboxes, so that starting a replica costs loading its
 * artifact, not booting a confined Node. Off until a node retains it (a
 * process that only inspects or tests a sandbox keeps no idle children).
 * Per key (entry file and heap limit) it keeps `size` children ready: a key
 * becomes warm when a sandbox of it is first taken, and each take starts a
 * replacement. A warm child unused for `idleMs` is ended (the key cools until
 * the next take). A warm child runs no workload code: it is tenant-neutral
 * until its init arrives, and is never returned to the pool after.
 */
export class WarmSandboxes {
  private readonly idle = new Map<WarmKey, WarmChild[]>()
  private holders = 0
  private size = 0
  private idleMs = 300_000
  private exitHook = false
  /** Children started warm, taken warm, and ended unused. */
  readonly counts = { started: 0, taken: 0, expired: 0 }

  /** A node uses the pool: keeps up to `size` blank children per key, each for at most `idleMs` unused. */
  retain ({ size = 1, idleMs = 300_000 }: { size?: number, idleMs?: number } = {}): void {
    this.holders++
    this.size = Math.max(this.size, size)
    this.idleMs = idleMs
    if (!this.exitHook) {
      this.exitHook = true
      process.once('exit', () => { void this.clear() })
    }
  }

  /** A node stopped: with no node left, every idle child is ended; resolves once they have exited. */
  async release (): Promise<void> {
    this.holders = Math.max(0, this.holders - 1)
    if (this.holders === 0) {
      this.size = 0
      await this.clear()
    }
  }

  /** The pids of the idle children, per key (`worker:64`: stateless entry, 64 MB heap). */
  warm (): Record<string, number[]> {
    return Object.fromEntries([...this.idle].map(([k, v]) => [k, v.map(w => w.sandbox.child.pid ?? -1)]))
  }

  /** Resolves once every idle child of the key has booted (the benchmark measures starts from a ready pool). */
  async ready (file: WorkerFile, heap: number): Promise<void> {
    await Promise.all((this.idle.get(`${file}:${heap}`) ?? []).map(async w => { await w.sandbox.booted }))
  }

  /** A live warm child for the key, or undefined; a take (warm or not) starts a replacement while the pool is retained. */
  take (file: WorkerFile, heap: number): ConfinedChild | undefined {
    if (this.size === 0) return undefined
    const key: WarmKey = `${file}:${heap}`
    const list = this.idle.get(key) ?? []
    this.idle.set(key, list)
    let found: ConfinedChild | undefined
    while (found == null && list.length > 0) {
      const w = list.shift() as WarmChild
      clearTimeout(w.timer)
      const c = w.sandbox.child
      if (c.exitCode == null && c.signalCode == null && c.connected) found = w.sandbox
      else endConfined(c)
    }
    if (found != null) this.counts.taken++
    // refilled after this turn, so the caller's child starts first
    setImmediate(() => { this.fill(key, file, heap) })
    return found
  }

  private fill (key: WarmKey, file: WorkerFile, heap: number): void {
    const list = this.idle.get(key)
    if (list == null || this.size === 0) return
    while (list.length < this.size) {
      let sandbox: ConfinedChild
      try {
        sandbox = startBlank(file, heap, true)
      } catch {
        return // the next take starts its child itself and reports why
      }
      this.counts.started++
      sandbox.child.on('error', () => {})
      const entry: WarmChild = {
        sandbox,
        timer: setTimeout(() => {
          const i = list.indexOf(entry)
          if (i >= 0) list.splice(i, 1)
          this.counts.expired++
          endConfined(sandbox.child)
        }, this.idleMs).unref()
      }
      list.push(entry)
    }
  }

  private async clear (): Promise<void> {
    const ending: Array<Promise<unknown>> = []
    for (const list of this.idle.values()) {
      for (const w of list.splice(0)) {
        clearTimeout(w.timer)
        const c = w.sandbox.child
        if (c.exitCode == null && c.signalCode == null) {
          // 'exit', not 'close': the output pipes of a child that never ran a workload are not read
          ending.push(new Promise(resolve => { c.once('exit', resolve) }))
          endConfined(c)
        }
      }
    }
    this.idle.clear()
    await Promise.all(ending)
  }
}

/** The process's warm sandboxes (one pool for every node of the process). */
export const warmPool = new WarmSandboxes()
