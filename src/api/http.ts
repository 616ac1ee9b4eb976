import type { IncomingMessage, ServerResponse } from 'node:http'
import { BeeMeshError } from '../errors.js'

export const MAX_BODY_BYTES = 1024 * 1024

/** An error that maps to an HTTP status; its message is shown to the client. */
export class HttpError extends BeeMeshError {
  constructor (readonly status: number, message: string, readonly reason = 'Error') {
    super(message)
    this.name = 'HttpError'
  }
}

/** One `/`-separated segment of a URL path, %-decoded; a malformed escape is the client's error (400). */
export function decodePathSegment (segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new HttpError(400, `the URL path segment ${JSON.stringify(segment)} has a malformed % escape`, 'BadRequest')
  }
}

export function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export function sendError (res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: err.message, reason: err.reason, code: err.status })
}

/** Reads a request body of at most `limit` bytes; 413 past it. */
export async function readBody (req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) throw new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${limit}`, 'RequestEntityTooLarge')
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw new HttpError(413, `request body exceeds the limit of ${limit} bytes`, 'RequestEntityTooLarge')
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

export async function readJson (req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const body = await readBody(req, limit)
  if (body.length === 0) throw new HttpError(400, 'request body is empty; expected JSON', 'BadRequest')
  try {
    return JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`, 'BadRequest')
  }
}
