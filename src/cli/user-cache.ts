/**
 * The CLI's private cache: `$XDG_CACHE_HOME/beemesh`, else `~/.cache/beemesh`
 * (BEEMESH_CACHE_DIR replaces it). What is kept there is trusted only
 * as far as the directory and the file are this user's alone: a directory or
 * file another user owns, or that others may write, is not read, and the
 * caller does without (the node's code cache, the CLI's tokens).
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

const ownedAndPrivate = (s: { uid: number, mode: number }): boolean => (process.getuid == null || s.uid === process.getuid()) && (s.mode & 0o022) === 0

/** The cache directory (made 0700 when missing), or undefined when it may not be trusted. */
export function privateCacheDir (env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = env.BEEMESH_CACHE_DIR ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'beemesh')
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const s = statSync(dir)
    return s.isDirectory() && ownedAndPrivate(s) ? dir : undefined
  } catch {
    return undefined
  }
}

/** A file of the cache, when it is this user's alone; undefined otherwise (or when missing). */
export function readPrivate (file: string): Buffer | undefined {
  try {
    return ownedAndPrivate(statSync(file)) ? readFileSync(file) : undefined
  } catch {
    return undefined
  }
}

/** Writes a cache file (0600) atomically: other processes may be reading or writing it at once. False when it could not. */
export function writePrivate (file: string, data: Buffer | string): boolean {
  try {
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, data, { mode: 0o600 })
    chmodSync(tmp, 0o600)
    renameSync(tmp, file)
    return true
  } catch {
    return false
  }
}
