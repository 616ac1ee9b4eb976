/**
 * Turns a workload module (TypeScript or JavaScript, with everything it
 * imports) into one ESM file: the artifact, addressed by the sha256 of its
 * bytes. The module's definition is read back by loading the artifact in a
 * sandbox (user code never runs in the calling process where the host can
 * confine it: a bubblewrap child, src/sandbox/confine.ts; a worker
 * thread otherwise), validated, and turned into the WorkloadSpec that travels
 * on the mesh.
 */
import { packagePath } from '../paths.js'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, extname, isAbsolute, join, relative, resolve } from 'node:path'
import { build, type BuildFailure, type Message, type Plugin } from 'esbuild'
import { parseAnyManifest } from '../workloads/manifest.js'
import { validateDefinition, type DefinitionFields, type DefinitionOverrides } from '../workloads/schema.js'
import { toWorkloadSpec } from '../workloads/spec.js'
import { BundleError, InvalidDefinitionError, UnsupportedWorkloadFileError, WorkloadFileNotFoundError } from '../workloads/errors.js'
import type { WorkloadSpec } from '../workloads/types.js'
import { inspectArtifact } from '../sandbox/sandbox.js'
import type { NodeIsolation } from '../sandbox/confine.js'

export interface BundleOptions {
  /** Fields that replace the module's own (from a manifest). */
  overrides?: DefinitionOverrides
  /** What the spec records as its `source`. Default: the module's path. */
  source?: string
  /** How the module's top-level code runs while its definition is read: a node passes its own mode (`refused` on a host that cannot confine). Default: confined where the host can confine. */
  isolation?: NodeIsolation
}

export interface BundleResult {
  /** The artifact: one ESM file. */
  code: Uint8Array
  /** Hex sha256 of `code`. */
  sha256: string
  size: number
  /** The spec to apply; the caller stamps `createdAt`. */
  spec: Omit<WorkloadSpec, 'createdAt'>
  /** The definition as validated, overrides applied, without its handler. */
  definition: DefinitionFields
  /** Absolute path of the bundled module. */
  entry: string
  /** esbuild warnings, `file:line:column: message`. */
  warnings: string[]
}

const MODULE_EXTENSIONS = new Set(['.ts', '.mts', '.js', '.mjs'])
const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json'])
/** How long the module may take to load when its definition is read back. */
const INSPECT_TIMEOUT_MS = 30_000

/**
 * What `import … from 'beemesh'` means inside a bundle: this project's
 * define module, from source when present (`src/` is part of the repository)
 * and compiled otherwise (an installed package ships `dist/` only).
 */
function defineModulePath (): string {
  const source = packagePath('src', 'workloads', 'define.ts')
  return existsSync(source) ? source : packagePath('dist', 'workloads', 'define.js')
}

function beemeshPlugin (definePath: string): Plugin {
  return {
    name: 'beemesh',
    setup (b) {
      b.onResolve({ filter: /^beemesh$/ }, () => ({ path: definePath }))
    }
  }
}

/** `examples/orders.ts` when under the working directory, the absolute path otherwise. */
function displayPath (path: string): string {
  const rel = relative(process.cwd(), path)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path
}

/** `file:line:column: message` (1-based column), or the message alone when esbuild gives no location. */
function formatMessage (m: Message, workingDir: string): string {
  if (m.location == null) return m.text
  const file = displayPath(resolve(workingDir, m.location.file))
  return `${file}:${m.location.line}:${m.location.column + 1}: ${m.text}`
}

function isBuildFailure (err: unknown): err is BuildFailure {
  return err instanceof Error && Array.isArray((err as Partial<BuildFailure>).errors)
}

async function assertFile (path: string, shown: string, context?: string): Promise<void> {
  let isFile: boolean
  try {
    isFile = (await stat(path)).isFile()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new WorkloadFileNotFoundError(shown, context)
    throw err
  }
  if (!isFile) throw new WorkloadFileNotFoundError(shown, context != null ? `${context}; it is not a regular file` : 'it is not a regular file')
}

/** Reads the definition back from the artifact in a throwaway sandbox (confined where the host can confine). */
async function readDefinition (code: Uint8Array, sha256: string, source: string, isolation?: NodeIsolation): Promise<Awaited<ReturnType<typeof inspectArtifact>>> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-bundle-'))
  try {
    const file = join(dir, `${sha256}.mjs`)
    await writeFile(file, code)
    return await inspectArtifact(file, { timeoutMs: INSPECT_TIMEOUT_MS, source, ...(isolation != null ? { isolation } : {}) })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Bundles a workload module with esbuild (ESM, node20; `node:*` stays
 * external, `beemesh` is this project's define module), reads its default
 * export back in a sandbox worker, validates it, applies `overrides`, and
 * returns the artifact with its spec. Throws BundleError for build errors and
 * InvalidDefinitionError for a bad or missing definition.
 */
export async function bundleWorkload (entry: string, { overrides = {}, source, isolation }: BundleOptions = {}): Promise<BundleResult> {
  const path = resolve(entry)
  const shown = displayPath(path)
  await assertFile(path, shown)
  const workingDir = dirname(path)
  let output
  try {
    output = await build({
      entryPoints: [path],
      absWorkingDir: workingDir,
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      write: false,
      logLevel: 'silent',
      plugins: [beemeshPlugin(defineModulePath())],
      // CommonJS dependencies call require() for node builtins; ESM has none.
      banner: { js: "import { createRequire as __beemeshCreateRequire } from 'node:module';\nconst require = __beemeshCreateRequire(import.meta.url);" }
    })
  } catch (err) {
    if (!isBuildFailure(err)) throw err
    const first = err.errors[0]
    const more = err.errors.length - 1
    const detail = first != null ? formatMessage(first, workingDir) : `${shown}: ${err.message}`
    throw new BundleError(shown, more > 0 ? `${detail} (and ${more} more error${more === 1 ? '' : 's'})` : detail, { cause: err })
  }
  const file = output.outputFiles[0]
  if (file == null) throw new BundleError(shown, `${shown}: esbuild produced no output`)
  const read = await readBundle(file.contents, { overrides, source: source ?? shown, shown, ...(isolation != null ? { isolation } : {}) })
  return { ...read, entry: path, warnings: output.warnings.map(w => formatMessage(w, workingDir)) }
}

/**
 * The spec of an artifact already bundled (one uploaded to the mesh, named by
 * its sha256): its definition read back in a sandbox (confined where the host
 * can confine), validated, with `overrides` applied. `shown` names it in
 * errors. Throws InvalidDefinitionError.
 */
export async function readBundle (code: Uint8Array, { overrides = {}, source, shown, isolation }: BundleOptions & { shown: string }): Promise<Omit<BundleResult, 'entry' | 'warnings'>> {
  const sha256 = createHash('sha256').update(code).digest('hex')
  const { hasHandler, hasOnCall, machine, ...fields } = await readDefinition(code, sha256, shown, isolation)
  const own = validateDefinition(fields, shown, { requireHandler: false })
  if (own.kind === 'container') {
    // A container definition is data: nothing of the module runs on the mesh.
  } else if (own.kind === 'stateful') {
    if (machine == null) throw new InvalidDefinitionError(shown, 'machine: missing; expected an XState v5 machine (setup({...}).createMachine({...}))')
    if (!machine.valid) throw new InvalidDefinitionError(shown, 'machine: expected an XState v5 machine (setup({...}).createMachine({...}))')
  } else {
    if (own.topics != null && !hasHandler) throw new InvalidDefinitionError(shown, 'handler: missing; expected a function (event, ctx) => …')
    if ((own.services?.length ?? 0) > 0 && !hasOnCall) throw new InvalidDefinitionError(shown, 'onCall: missing; expected a function (request, ctx) => reply to serve services')
  }
  const definition = { ...own, ...overrides } as DefinitionFields
  const { createdAt: _createdAt, ...spec } = toWorkloadSpec(definition, { artifact: { sha256, size: code.byteLength }, source: source ?? shown, now: 0, ...(machine?.id != null ? { machineId: machine.id } : {}) })
  return { code, sha256, size: code.byteLength, spec, definition }
}

/**
 * What `beemesh apply <file>` takes: a workload module (.ts, .mts, .js, .mjs)
 * or a manifest (.yaml, .yml, .json) naming one in `spec.module` with
 * overrides. Returns the bundle; a missing file is a WorkloadFileNotFoundError
 * naming the path.
 */
export async function loadApplyFile (file: string): Promise<BundleResult> {
  const loaded = await loadWorkload(file)
  if (loaded.bundle == null) throw new InvalidDefinitionError(displayPath(resolve(file)), `${loaded.spec.id} is a container workload: it has no module to bundle`)
  return loaded.bundle
}

/** What `apply` sends: the spec, and the bundle of an actor workload (container workloads have none). */
export interface LoadedWorkload {
  spec: Omit<WorkloadSpec, 'createdAt'>
  bundle?: BundleResult
}

/**
 * What `beemesh apply <file>` takes: a workload module (.ts, .mts, .js, .mjs),
 * a BeeMesh manifest (`kind: Actor`, naming a module in `spec.module`), or a
 * Kubernetes Pod or Deployment (.yaml, .yml, .json). Errors name the file.
 */
export async function loadWorkload (file: string): Promise<LoadedWorkload> {
  const path = resolve(file)
  const shown = displayPath(path)
  await assertFile(path, shown)
  const ext = extname(path).toLowerCase()
  if (MODULE_EXTENSIONS.has(ext)) {
    const bundle = await bundleWorkload(path)
    return bundle.spec.kind === 'container' ? { spec: bundle.spec } : { spec: bundle.spec, bundle }
  }
  if (!MANIFEST_EXTENSIONS.has(ext)) throw new UnsupportedWorkloadFileError(shown)
  const parsed = parseAnyManifest(await readFile(path, 'utf8'), shown)
  if (parsed.type === 'container') {
    const { createdAt: _createdAt, ...spec } = toWorkloadSpec(parsed.definition, { source: shown, now: 0 })
    return { spec }
  }
  const manifest = parsed.manifest
  await assertFile(manifest.module, displayPath(manifest.module), `spec.module of ${shown}`)
  const bundle = await bundleWorkload(manifest.module, { overrides: manifest.overrides, source: shown })
  return bundle.spec.kind === 'container' ? { spec: bundle.spec } : { spec: bundle.spec, bundle }
}
