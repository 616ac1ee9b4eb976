/**
 * Runs every `*.test.ts` under test/ and examples/ (or those matching argv filters), each in
 * its own Node process through uvu, and ends with one `N passed, N failed`
 * line. A file that crashes or reports no test counts as a failure.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { request } from 'node:http'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const filters = process.argv.slice(2)
const FILE_TIMEOUT_MS = 10 * 60_000

async function find (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await find(p))
    else if (e.name.endsWith('.test.ts')) out.push(p)
  }
  return out.sort()
}

interface FileResult { file: string, total: number, passed: number, skipped: number, code: number | null, ms: number }

async function runFile (file: string): Promise<FileResult> {
  const started = Date.now()
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './src/polyfills.ts', 'test/helpers/uvu-file.ts', file], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, FORCE_COLOR: '0' }
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); process.stdout.write(d) })
  const timer = setTimeout(() => { process.stdout.write(`\n${file}: timed out after ${FILE_TIMEOUT_MS / 1000}s\n`); child.kill('SIGKILL') }, FILE_TIMEOUT_MS)
  const code = await new Promise<number | null>(resolve => child.on('exit', c => { resolve(c) }))
  clearTimeout(timer)
  const num = (label: string): number => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(out)?.[1] ?? 0)
  return { file: relative(root, file), total: num('Total'), passed: num('Passed'), skipped: num('Skipped'), code, ms: Date.now() - started }
}

const files = [...await find(join(root, 'test')), ...await find(join(root, 'examples'))].filter(f => filters.length === 0 || filters.some(x => f.includes(x)))

/**
 * The container tests need a real engine. With no DOCKER_HOST, the runner
 * starts the test engine (scripts/container-engine.sh: Podman's Docker API
 * service, installed from Debian's packages if missing) and stops it at the
 * end. If that fails, the container tests fail loudly; they never skip.
 */
let startedEngine = false
const TEST_ENGINE = '/run/beemesh-podman.sock'
const answers = async (socketPath: string): Promise<boolean> => await new Promise(resolve => {
  const req = request({ socketPath, path: '/_ping', timeout: 2_000 }, res => { res.resume(); resolve(res.statusCode === 200) })
  req.on('error', () => { resolve(false) })
  req.on('timeout', () => { req.destroy(); resolve(false) })
  req.end()
})
// The Kubernetes API tests (kube*.test.ts) run container workloads too.
const needsEngine = files.some(f => /container|kube/.test(relative(root, f)))
if (process.env.DOCKER_HOST == null && needsEngine && await answers(TEST_ENGINE)) {
  // Started earlier by the developer (scripts/container-engine.sh start): used, and left running.
  process.env.DOCKER_HOST = `unix://${TEST_ENGINE}`
  process.stdout.write(`using the test container engine already running at ${TEST_ENGINE}\n`)
}
if (process.env.DOCKER_HOST == null && needsEngine) {
  process.stdout.write('DOCKER_HOST is not set: starting the test container engine (scripts/container-engine.sh start)…\n')
  const r = spawnSync('bash', [join(root, 'scripts/container-engine.sh'), 'start'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  const host = /export DOCKER_HOST=(\S+)/.exec(r.stdout ?? '')?.[1]
  if (r.status === 0 && host != null) {
    process.env.DOCKER_HOST = host
    startedEngine = true
    process.stdout.write(`test container engine at ${host}\n`)
  } else {
    process.stdout.write(`could not start the test container engine (exit ${String(r.status)}): the container tests will fail\n${r.stdout ?? ''}\n`)
  }
}

/**
 * The Kubernetes API tests drive the real kubectl. Without one on PATH, the
 * runner installs Debian's kubernetes-client when it can (as root with apt);
 * otherwise those tests fail loudly.
 */
const hasKubectl = (): boolean => spawnSync('sh', ['-c', 'command -v kubectl'], { stdio: 'ignore' }).status === 0
if (files.some(f => /kube/.test(relative(root, f))) && !hasKubectl() && process.getuid?.() === 0) {
  process.stdout.write('kubectl is not on PATH: installing kubernetes-client (apt-get)…\n')
  spawnSync('sh', ['-c', 'apt-get install -y kubernetes-client || (apt-get update && apt-get install -y kubernetes-client)'], { stdio: 'inherit' })
}

const results: FileResult[] = []
for (const file of files) {
  process.stdout.write(`\n# ${relative(root, file)}\n`)
  results.push(await runFile(file))
}

let passed = 0
let failed = 0
let skipped = 0
process.stdout.write('\nfile results:\n')
for (const r of results) {
  const fileFailed = r.code !== 0 || r.total === 0 ? Math.max(1, r.total - r.passed - r.skipped) : r.total - r.passed - r.skipped
  passed += r.code === 0 ? r.passed : Math.min(r.passed, r.total - fileFailed)
  failed += fileFailed
  skipped += r.skipped
  process.stdout.write(`  ${fileFailed > 0 ? 'FAIL' : 'ok  '} ${r.file}  ${r.passed}/${r.total} in ${(r.ms / 1000).toFixed(1)}s${r.code !== 0 ? ` (exit ${String(r.code)})` : ''}\n`)
}
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`)
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0
if (startedEngine) spawnSync('bash', [join(root, 'scripts/container-engine.sh'), 'stop'], { cwd: root, stdio: 'inherit' })
