/**
 * How `beemesh node start` starts fast: the node runs from dist/bin/daemon.cjs,
 * the whole CLI bundled into one CommonJS file, compiled with V8's code cache.
 * The first start of a build compiles as usual and, once the node is up,
 * saves what V8 compiled (`vm.Script#createCachedData`); every later start of
 * that build, with the same Node.js and flags, reads that instead of parsing
 * and compiling again (start CPU: docs/benchmarks.md).
 *
 * The cache is bytecode this process will run, so it is trusted only from a
 * directory this user owns that no one else may write
 * (`$XDG_CACHE_HOME/beemesh`, else `~/.cache/beemesh`, or
 * BEEMESH_CACHE_DIR); anything else is ignored and the node compiles
 * from source, as it does with a file whose checksum does not match (damage).
 * BEEMESH_CODE_CACHE=0 turns it off. V8 itself rejects a cache made by
 * another V8 version or flag set, or for another source.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire, Module } from 'node:module'
import { dirname, join } from 'node:path'
import { Script, constants } from 'node:vm'
import { packagePath } from '../paths.js'
import { privateCacheDir, readPrivate, writePrivate } from './user-cache.js'

/**
 * What the launcher did with the cache, and what to do once the node is up:
 * a global, because the bundle the launcher runs is another module graph.
 */
const LAUNCH = Symbol.for('beemesh.daemon.launch')
interface LaunchState {
  /** `used`: compiled from the cache; `made`: none usable, one is saved once the node is up; `off`: no trusted cache directory, or BEEMESH_CODE_CACHE=0. */
  cache: 'used' | 'made' | 'off'
  dir?: string
  started?: () => boolean
}
const launchState = (): LaunchState | undefined => (globalThis as Record<symbol, LaunchState | undefined>)[LAUNCH]

/** Whether `argv` is a command that runs a node (and so is worth the single-file bundle and its cache). */
export function isDaemonCommand (argv: string[]): boolean {
  const args = argv.slice(2).filter(a => !a.startsWith('-'))
  return args[0] === 'node' && args[1] === 'start'
}

/** The cache file for this build, Node.js and flag set. */
function cacheKey (bundleSha256: string): string {
  const runtime = createHash('sha256').update(`${process.version}\0${process.arch}\0${process.execArgv.join('\0')}`).digest('hex').slice(0, 16)
  return `daemon-${bundleSha256.slice(0, 16)}-${runtime}.v8cache`
}

/**
 * The cache data, when the file is this user's alone and intact. A file is
 * the SHA-256 of the data, then the data: V8 checks a cache's version, flags
 * and source, but not every byte of it, and a damaged one can crash the
 * process (a test flips its bytes).
 */
function readCache (file: string): Buffer | undefined {
  const bytes = readPrivate(file)
  if (bytes == null || bytes.length <= 32) return undefined
  const data = bytes.subarray(32)
  return createHash('sha256').update(data).digest().equals(bytes.subarray(0, 32)) ? data : undefined
}

/** Saves the cache for this build, and drops other builds' caches. */
function save (dir: string, name: string, data: Buffer, bundleSha256: string): boolean {
  if (!writePrivate(join(dir, name), Buffer.concat([createHash('sha256').update(data).digest(), data]))) return false
  try {
    for (const other of readdirSync(dir)) {
      if (other.startsWith('daemon-') && !other.startsWith(`daemon-${bundleSha256.slice(0, 16)}-`)) rmSync(join(dir, other), { force: true })
    }
  } catch {}
  return true
}

/** Runs the CLI (a node start) from dist/bin/daemon.cjs, through the code cache when there is a usable one. */
export function launchDaemon (): void {
  const file = packagePath('dist', 'bin', 'daemon.cjs')
  const source = readFileSync(file, 'utf8')
  const { sha256 } = JSON.parse(readFileSync(packagePath('dist', 'bin', 'daemon.json'), 'utf8')) as { sha256: string }
  const dir = process.env.BEEMESH_CODE_CACHE === '0' ? undefined : privateCacheDir()
  const name = cacheKey(sha256)
  const cachedData = dir != null ? readCache(join(dir, name)) : undefined
  const script = new Script(Module.wrap(source), {
    filename: file,
    ...(cachedData != null ? { cachedData } : {}),
    importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER
  })
  const state: LaunchState = dir == null ? { cache: 'off' } : cachedData != null && script.cachedDataRejected !== true ? { cache: 'used', dir } : { cache: 'made', dir, started: () => save(dir, name, script.createCachedData(), sha256) }
  ;(globalThis as Record<symbol, LaunchState>)[LAUNCH] = state
  const wrapper = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void
  const module = { exports: {}, filename: file, id: file, loaded: false }
  wrapper.call(module.exports, module.exports, createRequire(file), module, file, dirname(file))
}

/**
 * Called once the node is up: the launcher saves the code cache now if it had
 * none for this build. Returns what `node start` reports: how this process
 * was compiled (undefined when it was not started by the launcher).
 */
export function daemonStarted (): string | undefined {
  const state = launchState()
  if (state == null) return undefined
  const started = state.started
  delete state.started
  const saved = started?.() ?? false
  return state.cache === 'used' ? `compiled from the code cache in ${state.dir ?? ''}` : state.cache === 'made' ? `compiled from source; ${saved ? 'code cache saved in' : 'could not save the code cache in'} ${state.dir ?? ''}` : 'compiled from source (no code cache: BEEMESH_CODE_CACHE=0, or no cache directory this user alone may write)'
}
