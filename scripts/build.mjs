// Transpiles src/**/*.ts to dist/ (one file each, ESM, source maps) with esbuild.
// Type checking is separate (`npm run typecheck`, part of `npm test`).
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { build } from 'esbuild'

async function sources (dir) {
  const out = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...await sources(path))
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

const started = Date.now()
await rm('dist', { recursive: true, force: true })
const entryPoints = await sources('src')
await build({
  entryPoints,
  outdir: 'dist',
  outbase: 'src',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning'
})
if (process.env.npm_lifecycle_event === 'build') console.error(`built ${entryPoints.length} files into dist/ in ${Date.now() - started} ms`)
