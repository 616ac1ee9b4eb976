/**
 * The web view's acceptance, in a real browser against a real mesh: three
 * node processes, the turnstile example applied, Debian's chromium (headless,
 * driven by playwright-core) opening one node's /ui/ with the link
 * `beemesh ui` prints. The page must show the three nodes, draw the
 * turnstile's statechart with `locked` highlighted, and follow a `coin` sent
 * through the CLI to `unlocked`, with the transition in its log.
 *
 * The browser comes from scripts/browser.sh (or BEEMESH_CHROMIUM); without one
 * the test fails, it is never skipped. The screenshot lands in
 * test/artifacts/ui-turnstile.png, and with BEEMESH_UPDATE_DOCS=1 also in
 * docs/images/web-view.png.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { copyFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { BIN, cli, ROOT, startMesh, tempDir, testTrust, type NodeProcess, type TestTrust } from './helpers/processes.js'

const TURNSTILE = 'examples/turnstile/turnstile.ts'
const SCREENSHOT = join(ROOT, 'test/artifacts/ui-turnstile.png')
const DOCS_IMAGE = join(ROOT, 'docs/images/web-view.png')
/** Bound on every wait for the page (event-driven waits, never sleeps). */
const WAIT_MS = 30_000

let nodes: NodeProcess[] = []
let trust: TestTrust
let browser: Browser | undefined

function run (file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(file, args, { cwd: ROOT, env, timeout: 600_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

/** The chromium to drive: BEEMESH_CHROMIUM, else what scripts/browser.sh finds or installs. */
async function chromiumPath (): Promise<string> {
  const r = await run('bash', [join(ROOT, 'scripts/browser.sh')])
  const path = r.stdout.trim()
  if (r.code !== 0 || path === '') {
    throw new Error(`the web view test needs a Chromium and none could be found or installed (scripts/browser.sh exited ${r.code}):\n${r.stderr.trim()}\nInstall Debian's chromium (apt-get install chromium) or set BEEMESH_CHROMIUM to a Chromium executable.`)
  }
  return path
}

test.before(async () => {
  trust = await testTrust()
  const executablePath = await chromiumPath()
  nodes = await startMesh(3)
  const applied = await cli(['apply', TURNSTILE, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  browser = await chromium.launch({ executablePath, headless: true })
})

test.after(async () => {
  await browser?.close()
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

test('every node serves the web view\'s files at /ui/ without a token, under a restrictive content security policy', async () => {
  const base = nodes[1]!.apiUrl
  for (const path of ['/ui', '/ui/', '/ui/index.html']) {
    const res = await fetch(base + path)
    assert.is(res.status, 200, path)
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/, path)
    assert.match(await res.text(), /<script type="module" src="\/ui\/app\.js"><\/script>/, path)
    const csp = res.headers.get('content-security-policy') ?? ''
    assert.match(csp, /default-src 'self'/, path)
    assert.match(csp, /script-src 'self'/, path)
    assert.not.match(csp, /unsafe-inline|unsafe-eval|https?:/, `${path}: ${csp}`)
    assert.is(res.headers.get('cache-control'), 'no-cache', path)
  }
  const script = await fetch(`${base}/ui/app.js`)
  assert.is(script.status, 200)
  assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/)
  assert.ok((await script.text()).length > 100_000, 'app.js bundles elkjs')
  const style = await fetch(`${base}/ui/style.css`)
  assert.is(style.status, 200)
  assert.match(style.headers.get('content-type') ?? '', /^text\/css/)
  // Anything else under /ui/ is no file of the view: the API answers it (without a token: 401; with one: 404).
  assert.is((await fetch(`${base}/ui/secrets.json`)).status, 401)
  assert.is((await nodes[0]!.api.fetch('/ui/secrets.json')).status, 404)
})

test('beemesh ui --no-open prints the web view\'s URL, with a bearer token in the fragment when the CLI has a key', async () => {
  const api = nodes[0]!.apiUrl
  const withKey = await cli(['--key', trust.deployerKeyFile, 'ui', '--no-open', '--api', api])
  assert.is(withKey.code, 0, withKey.stderr)
  assert.match(withKey.stdout.trim(), new RegExp(`^${api.replace(/[.]/g, '\\.')}/ui/#token=bm1\\.[^\\s]+$`))
  const withToken = await cli(['--token', 'bm1.given.token', 'ui', '--no-open', '--api', api])
  assert.is(withToken.code, 0, withToken.stderr)
  assert.is(withToken.stdout.trim(), `${api}/ui/#token=bm1.given.token`)
  // No key, no token and no `beemesh up` mesh at that URL: a plain URL (whose page the API answers 401).
  const { BEEMESH_KEY: _key, BEEMESH_TOKEN: _token, ...env } = process.env
  const anonymous = await run(process.execPath, [BIN, 'ui', '--no-open', '--api', api], { ...env, HOME: await tempDir() })
  assert.is(anonymous.code, 0, anonymous.stderr)
  assert.is(anonymous.stdout.trim(), `${api}/ui/`)
})

/** Resolves once `selector` matches, or fails naming what the page was waiting for. */
/**
 * Polls a boolean expression in the page from here. page.evaluate goes over CDP, which
 * the page's CSP does not govern; waitForFunction's in-page polling evals a string
 * predicate, which the web view's CSP (no 'unsafe-eval') refuses once it has to poll.
 */
async function pageUntil (page: Page, expression: string, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  let last: unknown
  for (;;) {
    try {
      if (await page.evaluate<boolean>(expression) === true) return
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${WAIT_MS} ms${last != null ? ` (${String(last)})` : ''}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function see (page: Page, selector: string, what: string): Promise<void> {
  try {
    await page.waitForSelector(selector, { timeout: WAIT_MS })
  } catch (err) {
    // What the page said instead (e.g. why it has no diagram) makes the failure readable.
    const said = await page.evaluate<string>("[document.querySelector('#alert:not([hidden])')?.textContent, document.querySelector('#chart p')?.textContent].filter(Boolean).join('; ')").catch(() => '')
    throw new Error(`the web view never showed ${what} (${selector}) within ${WAIT_MS} ms${said !== '' ? `; the page says: ${said}` : ''}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`)
  }
}

test('the web view shows the mesh, draws the turnstile\'s statechart and follows a coin to unlocked, live', async () => {
  const node = nodes[1]!
  const link = await cli(['--key', trust.deployerKeyFile, 'ui', '--no-open', '--api', node.apiUrl])
  assert.is(link.code, 0, link.stderr)
  const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } })
  const problems: string[] = []
  page.on('pageerror', err => { problems.push(`page error: ${err.message}`) })
  page.on('console', msg => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`) })
  // Every data call carries the token from the link (the API has no anonymous access).
  const unauthenticated: string[] = []
  page.on('request', req => { if (new URL(req.url()).pathname.startsWith('/v1/') && req.headers().authorization == null) unauthenticated.push(req.url()) })

  await page.goto(link.stdout.trim())
  // The token moved out of the address bar.
  await pageUntil(page, '!location.hash.includes("token=")', 'the token did not leave the address bar')

  // The mesh: the three nodes, each with its peer id, linked.
  await pageUntil(page, 'document.querySelectorAll("svg[data-mesh] g[data-peer-id]").length === 3', 'the mesh never showed 3 nodes')
  const shown = await page.$$eval('svg[data-mesh] g[data-peer-id]', gs => gs.map(g => g.getAttribute('data-peer-id')))
  assert.equal(shown.sort(), nodes.map(n => n.peerId).sort())
  assert.ok(await page.$$eval('svg[data-mesh] path.link', ps => ps.length) >= 2, 'the mesh draws links')

  // The turnstile, placed on its owner; its statechart with `locked` highlighted.
  await see(page, 'button[data-workload="default/turnstile"]', 'the turnstile in the workload list')
  await page.click('button[data-workload="default/turnstile"]')
  const chart = 'svg[data-workload="default/turnstile"]'
  await see(page, `${chart} g[data-state-id="turnstile.locked"][data-active="true"]`, 'the turnstile\'s statechart with locked highlighted')
  for (const id of ['turnstile', 'turnstile.unlocked', 'turnstile.retired']) await see(page, `${chart} g[data-state-id="${id}"]`, `state ${id}`)
  assert.is(await page.getAttribute(`${chart} g[data-state-id="turnstile.unlocked"]`, 'data-active'), 'false')
  assert.is(await page.getAttribute(`${chart} g[data-state-id="turnstile.retired"]`, 'data-state-type'), 'final')
  assert.ok(await page.$(`${chart} g.transition[data-event="coin"]`) != null, 'the coin transition is drawn')
  assert.ok(await page.$(`${chart} g.transition.after text`) != null, 'the delayed transition is drawn')
  assert.match(await page.textContent(`${chart} g.transition.after`) ?? '', /after 10s/)

  // A coin through the CLI, via another node: the page follows it to unlocked and logs it.
  const sent = await cli(['send', 'turnstile', 'coin', '--api', nodes[2]!.apiUrl])
  assert.is(sent.code, 0, sent.stderr)
  assert.is(sent.stdout.trim(), 'unlocked')
  await see(page, `${chart} g[data-state-id="turnstile.unlocked"][data-active="true"]`, 'unlocked highlighted after the coin')
  await see(page, '#log tbody tr[data-event="coin"]', 'the coin transition in the log')
  assert.is(await page.getAttribute(`${chart} g[data-state-id="turnstile.locked"]`, 'data-active'), 'false')
  const row = await page.$$eval('#log tbody tr[data-event="coin"] td', tds => tds.map(td => td.textContent ?? ''))
  assert.is(row[0], '1', `seq: ${row.join(' | ')}`)
  assert.is(row[2], 'coin')
  assert.is(row[4], 'unlocked')

  await mkdir(join(ROOT, 'test/artifacts'), { recursive: true })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  console.log(`  screenshot: ${SCREENSHOT}`)
  if (process.env.BEEMESH_UPDATE_DOCS === '1') {
    await mkdir(join(ROOT, 'docs/images'), { recursive: true })
    await copyFile(SCREENSHOT, DOCS_IMAGE)
    console.log(`  updated ${DOCS_IMAGE}`)
  }

  // Ten seconds without a push lock it again: the timer's transition arrives live too, newest first in the log.
  await see(page, `${chart} g[data-state-id="turnstile.locked"][data-active="true"]`, 'locked again after 10 s')
  await see(page, '#log tbody tr:first-child[data-event^="xstate.after."]', 'the delayed transition at the top of the log')
  assert.match(await page.textContent('#log tbody tr:first-child') ?? '', /after 10s/)

  assert.equal(problems, [], 'no script errors or CSP violations')
  assert.equal(unauthenticated, [], 'every API call carries the token')
  await page.close()
})

test.run()
