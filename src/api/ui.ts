/**
 * The web view's static files (docs/web-view.md): the page, its script bundle
 * and style sheet, built by scripts/build.mjs into dist/ui/ and served by
 * every node under /ui without authentication. They hold no data: every call
 * the page makes goes through the authenticated control API.
 */
import { readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import { packagePath } from '../paths.js'

/** The files under /ui/ and their content types; nothing else is served. */
const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.js.map': 'application/json; charset=utf-8',
  'style.css': 'text/css; charset=utf-8'
}

/**
 * Same origin only: no inline script or style attribute, no eval, no frames,
 * nothing from elsewhere (the view works without internet access).
 */
export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

/** Where the built files are: the package's dist/ui (`npm run build`), whichever layout this code runs from. */
function uiDirectory (): string | undefined {
  const dir = packagePath('dist', 'ui') + '/'
  return existsSync(`${dir}index.html`) ? dir : undefined
}

let directory: string | undefined

/** The file name a `/ui…` path asks for, or undefined when it is not one of the web view's files. */
export function uiFile (path: string): string | undefined {
  if (path === '/ui' || path === '/ui/') return 'index.html'
  const name = path.slice('/ui/'.length)
  return path.startsWith('/ui/') && Object.hasOwn(FILES, name) ? name : undefined
}

/**
 * Serves `path` when it is one of the web view's files and answers true;
 * false for any other path. The page names its script and style sheet by
 * absolute path, so `/ui` and `/ui/` both serve it.
 */
export async function serveUi (path: string, res: ServerResponse): Promise<boolean> {
  const name = uiFile(path)
  if (name == null) return false
  directory ??= uiDirectory()
  const body = directory != null ? await readFile(directory + name).catch(() => undefined) : undefined
  const headers = {
    'cache-control': 'no-cache',
    'content-security-policy': UI_CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer'
  }
  if (body == null) {
    const text = 'the web view is not built: run `npm run build`\n'
    res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) })
    res.end(text)
    return true
  }
  res.writeHead(200, { ...headers, 'content-type': FILES[name]!, 'content-length': body.length })
  res.end(body)
  return true
}
