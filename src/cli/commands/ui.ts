/**
 * `beemesh ui`: the URL of the web view a node serves at /ui/ (docs/web-view.md),
 * with a bearer token in its fragment when the CLI speaks as a deployer, opened
 * in the desktop's browser when there is one.
 */
import { spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { InvalidArgumentError } from '../../errors.js'
import { bearerFor } from '../api-client.js'
import { tokenTtl } from './trust.js'
import { DEFAULT_UI_TOKEN_TTL } from '../defaults.js'


export interface UiOptions {
  api: string
  /** Open the URL with the desktop's opener (xdg-open) when there is one. */
  open: boolean
  /** A bearer token to hand the page (`--token`, BEEMESH_TOKEN); else one is made from the deployer key, if any. */
  token?: string
  /** Lifetime of a token made from the deployer key. */
  ttl?: string
}

/**
 * The web view's URL on the node at `api`; `token` goes in the fragment,
 * which the browser never sends to a server (the page moves it to
 * sessionStorage and clears it from the address bar).
 */
export function uiUrl (api: string, token?: string): string {
  let url: URL
  try {
    url = new URL('/ui/', api)
  } catch {
    throw new InvalidArgumentError(`--api must be a URL such as http://127.0.0.1:7700, got "${api}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`--api must be an http(s) URL, got "${api}"`)
  if (token != null) url.hash = `token=${encodeURIComponent(token)}`
  return url.href
}

/** The bearer token the page should use: the given one, else the CLI's for that API (the `beemesh up` mesh's, or one made from the deployer key), else none. */
async function pageToken ({ api, token, ttl = DEFAULT_UI_TOKEN_TTL }: Pick<UiOptions, 'api' | 'token' | 'ttl'>): Promise<string | undefined> {
  if (token != null && token !== '') return token
  return await bearerFor(api, { ttlMs: tokenTtl(ttl) })
}

/** The first executable named `name` on PATH, if any. */
function onPath (name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/** Hands `url` to the desktop's opener, detached; false when there is none (or it cannot start). */
function openInBrowser (url: string): boolean {
  const opener = onPath(process.platform === 'darwin' ? 'open' : 'xdg-open')
  if (opener == null) return false
  try {
    const child = spawn(opener, [url], { detached: true, stdio: 'ignore' })
    child.on('error', () => {})
    child.unref()
    return true
  } catch {
    return false
  }
}

/** `beemesh ui`: prints the web view's URL (stdout) and opens it unless `open` is false. */
export async function ui (opts: UiOptions): Promise<void> {
  const token = await pageToken(opts)
  const url = uiUrl(opts.api, token)
  process.stdout.write(`${url}\n`)
  if (token != null) process.stderr.write('the URL carries a bearer token: treat it as a password\n')
  if (opts.open && openInBrowser(url)) process.stderr.write('opened in your browser\n')
  else if (opts.open) process.stderr.write('no browser opener (xdg-open) found: open the URL yourself\n')
}

/** Registers `beemesh ui [--no-open] [--ttl D]` on `program`. */
