// Transpiles src/**/*.ts to dist/ (one file each, ESM, source maps) with esbuild,
// except the web view's browser code (src/ui/web), which is bundled into
// dist/ui/ with its page and style sheet (served by every node at /ui).
// Type checking is separate (`npm run typecheck`, part of `npm test`).
import { createHash } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
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
// kad-dht's table of 65,536 key prefixes (routing-table refresh) ships as a
// 479 KB array literal, which a node would keep as source, boilerplate and
// array (1.3 MB of heap). Bundled, it is the same numbers packed three bytes
// each in a base64 string, unpacked once into a Uint32Array; the build checks
// every value survives the round trip.
const kadPrefixes = {
  name: 'kad-dht-prefixes',
  setup (b) {
    b.onLoad({ filter: /kad-dht[\\/]dist[\\/]src[\\/]routing-table[\\/]generated-prefix-list\.js$/ }, async args => {
      const text = await readFile(args.path, 'utf8')
      const values = JSON.parse(text.slice(text.indexOf('['), text.lastIndexOf(']') + 1))
      if (!values.every(v => Number.isInteger(v) && v >= 0 && v < 2 ** 24)) throw new Error(`${args.path}: a prefix does not fit in three bytes`)
      const packed = Buffer.alloc(values.length * 3)
      values.forEach((v, i) => { packed.writeUIntLE(v, i * 3, 3) })
      const back = Buffer.from(packed.toString('base64'), 'base64')
      if (!values.every((v, i) => back.readUIntLE(i * 3, 3) === v)) throw new Error(`${args.path}: packing the prefixes lost a value`)
      return {
        contents: `const packed = Buffer.from(${JSON.stringify(packed.toString('base64'))}, 'base64')
const prefixes = new Uint32Array(${values.length})
for (let i = 0, j = 0; i < prefixes.length; i++, j += 3) prefixes[i] = packed[j] | (packed[j + 1] << 8) | (packed[j + 2] << 16)
export default prefixes`,
        loader: 'js'
      }
    })
  }
}

// libp2p's peer store and peer records sort multiaddrs, protocols and keys
// with localeCompare, thousands of times while a node joins a mesh. The order
// only has to be the same each time (records are compared with themselves,
// never across nodes), and localeCompare's first call loads ICU's collation
// (milliseconds of a node's start, 3 MB of its memory). Bundled, those sorts
// compare UTF-16 code units; the build fails if a file changes shape.
const LOCALE_SORTS = [
  ['@libp2p/peer-record', 'peer-record/utils.js', 1],
  ['@libp2p/peer-store', 'utils/dedupe-addresses.js', 1],
  ['@libp2p/peer-store', 'utils/to-peer-pb.js', 2]
]
const codeUnitSorts = {
  name: 'code-unit-sorts',
  setup (b) {
    b.onLoad({ filter: /@libp2p[\\/](peer-record|peer-store)[\\/]dist[\\/]src[\\/].*\.js$/ }, async args => {
      const entry = LOCALE_SORTS.find(([pkg, file]) => args.path.replaceAll('\\', '/').endsWith(`${pkg}/dist/src/${file}`))
      if (entry == null) return undefined
      const text = await readFile(args.path, 'utf8')
      let n = 0
      const patched = text.replace(/([\w.]+(?:\(\))?)\.localeCompare\(([\w.]+(?:\(\))?)\)/g, (_m, a, b) => { n++; return `__bmCompare(${a}, ${b})` })
      if (n !== entry[2] || patched.includes('localeCompare')) throw new Error(`${args.path}: expected ${entry[2]} localeCompare sorts, found ${n} (the dependency changed; review scripts/build.mjs)`)
      return { contents: `const __bmCompare = (a, b) => a < b ? -1 : a > b ? 1 : 0;\n${patched}`, loader: 'js' }
    })
  }
}

// yamux (@chainsafe/libp2p-yamux 8) answers every data frame it receives with
// a window update, so each gossip message a node relays costs a second frame
// back (its own noise encryption and socket write): at rest, with one small
// message after another, that is about a third of the frames a node sends.
// Bundled, a stream grants more window only once half of it is used, as the
// yamux spec and go-yamux do (a sender is never left with less than half a
// window, so nothing stalls). The build fails if the file changes shape.
const YAMUX_UPDATE_CHECK = 'if (this.recvWindowCapacity >= this.recvWindow && flags === 0) {'
const yamuxWindowUpdates = {
  name: 'yamux-window-updates',
  setup (b) {
    b.onLoad({ filter: /libp2p-yamux[\\/]dist[\\/]src[\\/]stream\.js$/ }, async args => {
      const text = await readFile(args.path, 'utf8')
      if (text.split(YAMUX_UPDATE_CHECK).length !== 2) throw new Error(`${args.path}: expected one "${YAMUX_UPDATE_CHECK}" (the dependency changed; review scripts/build.mjs)`)
      return { contents: text.replace(YAMUX_UPDATE_CHECK, 'if (flags === 0 && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) {'), loader: 'js' }
    })
  }
}

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
  plugins: [kadPrefixes, codeUnitSorts, yamuxWindowUpdates],
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: process.env.BEEMESH_BUILD_MINIFY !== '0',
  sourcemap: 'linked',
  metafile: true,
  external: ['classic-level', 'dockerode', 'esbuild', 'cpu-features', 'ssh2'],
  banner: { js: "import { createRequire as __bmRequire } from 'node:module';const require = __bmRequire(import.meta.url);" },
  logLevel: 'warning'
})
// The node daemon: the CLI as one CommonJS file, which `node start` runs
// through V8's code cache (src/cli/launch.ts); its hash names the cache. It
// holds only what `node start` can reach: the other commands' modules are left
// out (the launcher runs this file for `node start` alone), because a node
// keeps its whole source in memory.
const nodeStartOnly = {
  name: 'node-start-only',
  setup (b) {
    b.onResolve({ filter: /^\.\/commands\// }, args => args.kind === 'dynamic-import' && args.importer.endsWith(join('src', 'cli', 'main.ts')) && !args.path.startsWith('./commands/node-start.')
      ? { path: args.path, namespace: 'node-start-only' }
      : undefined)
    b.onLoad({ filter: /.*/, namespace: 'node-start-only' }, args => ({ contents: `throw new Error(${JSON.stringify(`${args.path} is not part of the node daemon bundle (dist/bin/daemon.cjs runs \`node start\` only)`)})` }))
  }
}
await build({
  plugins: [nodeStartOnly, kadPrefixes, codeUnitSorts, yamuxWindowUpdates],
  entryPoints: [join('src', 'cli', 'daemon.ts')],
  outfile: join('dist', 'bin', 'daemon.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: process.env.BEEMESH_BUILD_MINIFY !== '0',
  sourcemap: 'linked',
  external: ['classic-level', 'dockerode', 'esbuild', 'cpu-features', 'ssh2'],
  define: { 'import.meta.url': '__bmUrl' },
  banner: { js: "const __bmUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning'
})
const daemon = await readFile(join('dist', 'bin', 'daemon.cjs'))
await writeFile(join('dist', 'bin', 'daemon.json'), JSON.stringify({ sha256: createHash('sha256').update(daemon).digest('hex') }) + '\n')
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
