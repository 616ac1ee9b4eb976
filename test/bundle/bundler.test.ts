import { createHash } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { bundleWorkload, loadApplyFile } from '../../src/bundle/bundler.js'
import { ArtifactLoadError } from '../../src/sandbox/errors.js'
import { BundleError, InvalidDefinitionError, InvalidManifestError, UnsupportedWorkloadFileError, WorkloadFileNotFoundError } from '../../src/workloads/errors.js'

const HELPER = `export function total (items: Array<{ qty: number, price: number }>): number {
  return items.reduce((sum, i) => sum + i.qty * i.price, 0)
}
`

const MODULE = `import { defineWorkload } from 'beemesh'
import { total } from './helper.js'

interface Order { items: Array<{ qty: number, price: number }> }

export default defineWorkload<Order>({
  name: 'orders',
  kind: 'stateless',
  topics: ['orders', 'orders.retry'],
  replicas: 2,
  resources: { cpu: '250m', memory: '32Mi' },
  handler: async (event, ctx) => {
    await ctx.publish('orders.priced', { total: total(event.data.items) })
  }
})
`

async function project (files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-bundler-'))
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
  return dir
}

async function rejects (p: Promise<unknown>, type: new (...args: any[]) => Error, pattern: RegExp): Promise<Error> {
  try {
    await p
  } catch (err) {
    assert.instance(err, type)
    assert.match((err as Error).message, pattern)
    assert.not.match((err as Error).message, /\n/)
    return err as Error
  }
  assert.unreachable(`expected ${type.name} matching ${String(pattern)}`)
  throw new Error('unreachable')
}

test('a TS module with a local import and beemesh becomes one ESM artifact and a spec', async () => {
  const dir = await project({ 'helper.ts': HELPER, 'orders.ts': MODULE })
  const entry = join(dir, 'orders.ts')
  const b = await bundleWorkload(entry)
  const text = new TextDecoder().decode(b.code)
  assert.is(b.sha256, createHash('sha256').update(b.code).digest('hex'))
  assert.is(b.size, b.code.byteLength)
  assert.not.match(text, /from ["']beemesh["']/, 'beemesh is bundled, not imported')
  assert.not.match(text, /from ["']\.\/helper/, 'the helper is bundled')
  assert.match(text, /reduce\(/)
  assert.ok(b.size < 150_000, `artifact of ${b.size} bytes: only what a workload needs should be bundled`)
  assert.is(b.entry, entry)
  assert.equal(b.warnings, [])
  assert.equal(b.spec, {
    id: 'default/orders',
    name: 'orders',
    namespace: 'default',
    kind: 'stateless',
    topics: ['orders', 'orders.retry'],
    replicas: 2,
    resources: { cpuMillis: 250, memoryBytes: 32 * 1024 * 1024 },
    nodeSelector: {},
    delivery: 'queue',
    retries: 2,
    timeoutMs: 5000,
    memoryLimitMb: 32,
    artifact: { sha256: b.sha256, size: b.size },
    source: entry
  })
  assert.equal(b.definition, { name: 'orders', kind: 'stateless', topics: ['orders', 'orders.retry'], replicas: 2, resources: { cpu: '250m', memory: '32Mi' } })
})

test('the same input gives the same sha256; a change gives another', async () => {
  const dir = await project({ 'helper.ts': HELPER, 'orders.ts': MODULE })
  const first = await bundleWorkload(join(dir, 'orders.ts'))
  const again = await bundleWorkload(join(dir, 'orders.ts'))
  assert.is(again.sha256, first.sha256)
  assert.equal(again.code, first.code)
  await writeFile(join(dir, 'helper.ts'), HELPER.replace('sum + i.qty', 'sum + 2 * i.qty'))
  const changed = await bundleWorkload(join(dir, 'orders.ts'))
  assert.is.not(changed.sha256, first.sha256)
})

test('a plain JS module exporting an object needs no beemesh import', async () => {
  const dir = await project({ 'w.mjs': "export default { name: 'plain', kind: 'stateless', topics: ['t'], handler () {} }\n" })
  const b = await bundleWorkload(join(dir, 'w.mjs'))
  assert.is(b.spec.id, 'default/plain')
  assert.is(b.spec.memoryLimitMb, 64)
})

test('a syntax error is a BundleError with file:line:column', async () => {
  const dir = await project({ 'broken.ts': "import { defineWorkload } from 'beemesh'\n\nexport default defineWorkload({ name: 'x' kind: 'stateless' })\n" })
  const err = await rejects(bundleWorkload(join(dir, 'broken.ts')), BundleError, /broken\.ts:3:\d+: Expected "}" but found "kind"$/)
  assert.is(err.name, 'BundleError')
})

test('an unresolvable import is a BundleError naming it', async () => {
  const dir = await project({ 'w.ts': "import { nope } from './missing.js'\nexport default nope\n" })
  await rejects(bundleWorkload(join(dir, 'w.ts')), BundleError, /w\.ts:1:\d+: Could not resolve "\.\/missing\.js"/)
})

test('a module without a default export says so and what to write', async () => {
  const dir = await project({ 'nodefault.ts': "export const handler = () => {}\n" })
  const entry = join(dir, 'nodefault.ts')
  await rejects(bundleWorkload(entry), InvalidDefinitionError, new RegExp(`^${entry.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the module has no default export; export default defineWorkload\\(\\{\\.\\.\\.\\}\\)$`))
})

test('a bad definition names the module file and the field, also when defineWorkload throws', async () => {
  const dir = await project({
    'a.ts': "import { defineWorkload } from 'beemesh'\nexport default defineWorkload({ name: 'a', kind: 'stateless', topics: [], handler: () => {} })\n",
    'b.mjs': "export default { name: 'b', kind: 'stateless', topics: ['t'], replicas: 0, handler () {} }\n",
    'c.mjs': "export default { name: 'c', kind: 'stateless', topics: ['t'] }\n"
  })
  await rejects(bundleWorkload(join(dir, 'a.ts')), InvalidDefinitionError, /a\.ts: topics: expected a non-empty array of topic names$/)
  await rejects(bundleWorkload(join(dir, 'b.mjs')), InvalidDefinitionError, /b\.mjs: replicas: expected an integer from 1 to 100, got 0$/)
  await rejects(bundleWorkload(join(dir, 'c.mjs')), InvalidDefinitionError, /c\.mjs: handler: missing; expected a function/)
})

test('a module that throws while loading is reported with its message', async () => {
  const dir = await project({ 'boom.ts': "throw new Error('config missing')\nexport default {}\n" })
  await rejects(bundleWorkload(join(dir, 'boom.ts')), ArtifactLoadError, /boom\.ts: config missing/)
})

test('a manifest overrides the module: replicas, name, source', async () => {
  const dir = await project({
    'helper.ts': HELPER,
    'orders.ts': MODULE,
    'orders.yaml': 'apiVersion: beemesh.io/v1\nkind: Actor\nmetadata:\n  name: orders-eu\nspec:\n  module: ./orders.ts\n  replicas: 5\n  nodeSelector:\n    zone: eu\n'
  })
  const b = await loadApplyFile(join(dir, 'orders.yaml'))
  assert.is(b.spec.id, 'default/orders-eu')
  assert.is(b.spec.replicas, 5)
  assert.equal(b.spec.nodeSelector, { zone: 'eu' })
  assert.equal(b.spec.topics, ['orders', 'orders.retry'])
  assert.is(b.spec.source, join(dir, 'orders.yaml'))
  assert.is(b.entry, join(dir, 'orders.ts'))
  const direct = await loadApplyFile(join(dir, 'orders.ts'))
  assert.is(direct.sha256, b.sha256, 'the artifact is the module, whatever the manifest overrides')
  assert.is(direct.spec.replicas, 2)
})

test('loadApplyFile: missing files, unknown types and bad manifests are clear errors', async () => {
  const dir = await project({
    'notes.txt': 'hello',
    'dangling.yaml': 'apiVersion: beemesh.io/v1\nkind: Actor\nspec:\n  module: ./gone.ts\n',
    'broken.yml': 'apiVersion: beemesh.io/v1\nkind: Actor\nspec:\n  module: [\n'
  })
  await rejects(loadApplyFile(join(dir, 'nope.ts')), WorkloadFileNotFoundError, /nope\.ts: file not found$/)
  await rejects(loadApplyFile(dir), WorkloadFileNotFoundError, /file not found \(it is not a regular file\)$/)
  await rejects(loadApplyFile(join(dir, 'notes.txt')), UnsupportedWorkloadFileError, /notes\.txt: unsupported file type; expected a module/)
  await rejects(loadApplyFile(join(dir, 'dangling.yaml')), WorkloadFileNotFoundError, /gone\.ts: file not found \(spec\.module of .*dangling\.yaml\)$/)
  await rejects(loadApplyFile(join(dir, 'broken.yml')), InvalidManifestError, /broken\.yml: invalid YAML at line 5/)
})

/** Text only the yaml library holds: the tag prefix of its core schema (the library is bundled whole, or not at all). */
const YAML_MARKER = 'tag:yaml.org,2002:'
/** Text only the Kubernetes manifest parser (src/workloads/kube.ts) holds. */
const KUBE_MARKER = 'beemesh.io/restart-backoff'

test('a bundled workload carries defineWorkload but no YAML library and no Kubernetes parser', async () => {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  // The markers are real: bundling the manifest reader, which does parse YAML and Kubernetes manifests, keeps both.
  const manifest = await build({ entryPoints: [join(root, 'src/workloads/manifest.ts')], bundle: true, format: 'esm', platform: 'node', write: false, logLevel: 'silent' })
  const manifestText = manifest.outputFiles[0]!.text
  assert.ok(manifestText.includes(YAML_MARKER), 'the yaml marker survives bundling')
  assert.ok(manifestText.includes(KUBE_MARKER), 'the kube marker survives bundling')
  for (const example of ['examples/pipeline/ingest.ts', 'examples/pipeline/fulfil.ts', 'examples/turnstile/turnstile.ts', 'examples/containers/hello.ts']) {
    const b = await bundleWorkload(join(root, example))
    const text = new TextDecoder().decode(b.code)
    assert.ok(text.includes('export default defineWorkload({...})'), `${example}: defineWorkload's validation is bundled`)
    assert.not.ok(text.includes(YAML_MARKER), `${example}: the bundle holds the yaml library`)
    assert.not.ok(text.includes(KUBE_MARKER), `${example}: the bundle holds the Kubernetes parser`)
  }
})

test.run()
