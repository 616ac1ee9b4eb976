import { createRequire } from 'node:module'
import { InvalidArgumentError } from '../errors.js'

// The YAML writer is loaded only for `-o yaml` (it is most of what this module would load).
const require = createRequire(import.meta.url)
const toYaml = (value: unknown): string => (require('yaml') as typeof import('yaml')).stringify(value)

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const
export type OutputFormat = typeof OUTPUT_FORMATS[number]

export function parseOutputFormat (value: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat
  throw new InvalidArgumentError(`unknown output format "${value}"; use one of ${OUTPUT_FORMATS.join(', ')}`)
}

export interface Column<T> {
  header: string
  value: (row: T) => string
}

/** Prints rows as a table (kubectl-style, borderless), JSON or YAML. */
export function printRows<T> (rows: T[], columns: Array<Column<T>>, format: OutputFormat, out: NodeJS.WritableStream = process.stdout): void {
  if (format === 'json') { out.write(JSON.stringify(rows, null, 2) + '\n'); return }
  if (format === 'yaml') { out.write(toYaml(rows)); return }
  if (rows.length === 0) { out.write('No resources found.\n'); return }
  const Table = require('cli-table3') as typeof import('cli-table3')
  const table = new Table({
    head: columns.map(c => c.header),
    chars: { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '   ' },
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 }
  })
  for (const row of rows) table.push(columns.map(c => c.value(row)))
  out.write(table.toString().split('\n').map(l => l.trimEnd()).join('\n') + '\n')
}

/** Prints one object as aligned `key: value` lines, JSON or YAML. */
export function printObject (obj: Record<string, unknown>, format: OutputFormat, out: NodeJS.WritableStream = process.stdout): void {
  if (format === 'json') { out.write(JSON.stringify(obj, null, 2) + '\n'); return }
  if (format === 'yaml') { out.write(toYaml(obj)); return }
  const width = Math.max(...Object.keys(obj).map(k => k.length)) + 1
  for (const [k, v] of Object.entries(obj)) {
    const lines = Array.isArray(v) ? v.map(String) : [typeof v === 'object' && v != null ? JSON.stringify(v) : String(v)]
    out.write(`${(k + ':').padEnd(width)} ${lines[0] ?? ''}\n`)
    for (const line of lines.slice(1)) out.write(`${' '.repeat(width)} ${line}\n`)
  }
}

/** Human duration, kubectl AGE style: 45s, 3m12s, 2h5m, 4d. */
export function formatAge (ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 120) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${s % 60 > 0 ? `${s % 60}s` : ''}`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h${m % 60 > 0 ? `${m % 60}m` : ''}`
  return `${Math.floor(h / 24)}d`
}
