// Transpiles src/**/*.ts to dist/ (one file each, ESM, source maps) with esbuild,
// except the web view's browser code (src/ui/web), which is bundled into
// dist/ui/ with its page and style sheet (served by every node at /ui).
// Type checking is separate (`npm run typecheck`, part of `npm test`).
import { copyFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { build } from 'esbuild'

const WEB = join('src', 'ui', 'web')

async function sources (dir) {
  const out = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (path === WEB) continue
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
// The CLI and the node as one bundle (dist/bin/), split per command so a
// command loads only its own chunks: start-up reads a few files, not thousands
// of modules. Packages with native parts or files of their own stay in
// node_modules, loaded when first used (the container engine, LevelDB's binding,
// esbuild itself). The `require` banner serves bundled CommonJS packages.
const bundle = await build({
  entryPoints: { beemesh: join('src', 'cli', 'bin.ts') },
  outdir: join('dist', 'bin'),
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: true,
  sourcemap: 'linked',
  metafile: true,
  external: ['classic-level', 'dockerode', 'esbuild', 'cpu-features', 'ssh2'],
  banner: { js: "import { createRequire as __bmRequire } from 'node:module';const require = __bmRequire(import.meta.url);" },
  logLevel: 'warning'
})
if (process.env.BEEMESH_BUILD_META != null) await writeFile(process.env.BEEMESH_BUILD_META, JSON.stringify(bundle.metafile))
// The sandbox worker entries, self-contained (a confined sandbox sees only its own files; docs/security.md).
for (const file of ['worker', 'machine-worker']) {
  await build({ entryPoints: [join('src', 'sandbox', `${file}.ts`)], outfile: join('dist', 'sandbox', `${file}.bundle.mjs`), bundle: true, format: 'esm', platform: 'node', target: 'node20', logLevel: 'warning' })
}
// The web view: one browser bundle (elkjs included, nothing fetched from elsewhere).
await build({
  entryPoints: [join(WEB, 'app.ts')],
  outfile: join('dist', 'ui', 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  logLevel: 'warning'
})
await mkdir(join('dist', 'ui'), { recursive: true })
for (const file of ['index.html', 'style.css']) await copyFile(join(WEB, file), join('dist', 'ui', file))
if (process.env.npm_lifecycle_event === 'build') console.error(`built ${entryPoints.length} files into dist/ in ${Date.now() - started} ms`)
