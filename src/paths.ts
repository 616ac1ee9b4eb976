/**
 * Where BeeMesh's own files are. Code runs from three layouts: `src/` under
 * tsx (tests), `dist/` (one compiled file per source file: the library) and
 * `dist/bin/` (the bundled CLI and node, split into chunks). A path
 * relative to `import.meta.url` means something different in each, so files
 * are named from the package root: the nearest directory above this module
 * whose package.json is BeeMesh's.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function findPackageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const manifest = join(dir, 'package.json')
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'beemesh') return dir
    const parent = dirname(dir)
    if (parent === dir) throw new Error(`BeeMesh's package.json was not found above ${fileURLToPath(import.meta.url)}`)
    dir = parent
  }
}

/** The BeeMesh package's root directory (bin/, dist/, and src/ in a checkout). */
export const PACKAGE_ROOT = findPackageRoot()

/** A path inside the package. */
export const packagePath = (...parts: string[]): string => join(PACKAGE_ROOT, ...parts)
