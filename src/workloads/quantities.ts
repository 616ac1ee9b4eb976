/**
 * Kubernetes resource quantities: CPU as cores (`0.5`, `2`) or millicores
 * (`100m`); memory as bytes with a binary (`64Mi`) or decimal (`500M`) suffix,
 * or an exponent (`1e3`). Parsing is exact (decimal digits, not floating
 * point) and rounds fractions up, as Kubernetes does.
 */
import { InvalidQuantityError } from './errors.js'

const BINARY_SUFFIXES = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 } as const
const DECIMAL_SUFFIXES = { k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 } as const

/** sign, digits with an optional fraction, optional exponent, optional suffix */
const QUANTITY = /^(\+)?(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?([A-Za-z]*)$/
/** Longer strings are not quantities (and would only cost time to parse). */
const MAX_LENGTH = 64
/** Exponents beyond this are rejected rather than computed (`1e999999999`). */
const MAX_EXPONENT = 40

const CPU_EXPECTED = 'expected a non-negative number of cores ("0.5", "2") or millicores ("100m")'
const MEMORY_EXPECTED = 'expected a non-negative number of bytes, optionally with a suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P or E (e.g. "64Mi", "500M")'

interface Decimal {
  /** All digits of the number, without the decimal point. */
  digits: bigint
  /** Power of ten to multiply `digits` by. */
  exponent: number
  suffix: string
}

function parseDecimal (q: string | number, resource: 'cpu' | 'memory', expected: string): Decimal {
  let text: string
  if (typeof q === 'number') {
    if (!Number.isFinite(q) || q < 0) throw new InvalidQuantityError(q, resource, expected)
    text = String(q)
  } else if (typeof q === 'string') {
    text = q.trim()
  } else {
    throw new InvalidQuantityError(q, resource, expected)
  }
  const m = text.length <= MAX_LENGTH ? QUANTITY.exec(text) : null
  if (m == null) throw new InvalidQuantityError(q, resource, expected)
  const [, , number = '', exp = '0', suffix = ''] = m
  const [whole = '', fraction = ''] = number.split('.')
  const digits = BigInt(`${whole}${fraction}` === '' ? '0' : `${whole}${fraction}`)
  if (digits === 0n) return { digits, exponent: 0, suffix }
  const exponent = Number(exp) - fraction.length
  if (Math.abs(exponent) > MAX_EXPONENT) throw new InvalidQuantityError(q, resource, `${expected}; the exponent is out of range`)
  return { digits, exponent, suffix }
}

/** `digits × 10^exponent × multiplier`, rounded up to an integer, as a safe JS number. */
function scale ({ digits, exponent }: Decimal, multiplier: bigint, q: string | number, resource: 'cpu' | 'memory', expected: string): number {
  let n: bigint
  if (exponent >= 0) {
    n = digits * 10n ** BigInt(exponent) * multiplier
  } else {
    const divisor = 10n ** BigInt(-exponent)
    const product = digits * multiplier
    n = product / divisor + (product % divisor === 0n ? 0n : 1n)
  }
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidQuantityError(q, resource, `${expected}; the value is too large`)
  return Number(n)
}

/** Parses a CPU quantity into millicores: `'100m'` → 100, `'0.5'` → 500, `2` → 2000. */
export function parseCpu (q: string | number): number {
  const d = parseDecimal(q, 'cpu', CPU_EXPECTED)
  if (d.suffix === 'm') return scale(d, 1n, q, 'cpu', CPU_EXPECTED)
  if (d.suffix === '') return scale(d, 1000n, q, 'cpu', CPU_EXPECTED)
  throw new InvalidQuantityError(q, 'cpu', CPU_EXPECTED)
}

/** Parses a memory quantity into bytes: `'64Mi'` → 67108864, `'500M'` → 500000000, `'1e3'` → 1000. */
export function parseMemory (q: string | number): number {
  const d = parseDecimal(q, 'memory', MEMORY_EXPECTED)
  if (d.suffix === '') return scale(d, 1n, q, 'memory', MEMORY_EXPECTED)
  if (d.suffix in BINARY_SUFFIXES) return scale(d, 1n << BigInt(BINARY_SUFFIXES[d.suffix as keyof typeof BINARY_SUFFIXES]), q, 'memory', MEMORY_EXPECTED)
  if (d.suffix in DECIMAL_SUFFIXES) return scale(d, 10n ** BigInt(DECIMAL_SUFFIXES[d.suffix as keyof typeof DECIMAL_SUFFIXES]), q, 'memory', MEMORY_EXPECTED)
  if (d.suffix === 'm') throw new InvalidQuantityError(q, 'memory', `the suffix "m" means thousandths of a byte; use "M" for megabytes or "Mi" for mebibytes`)
  throw new InvalidQuantityError(q, 'memory', MEMORY_EXPECTED)
}

/** Millicores for display: `100m`, or whole cores as `2`. */
export function formatCpu (millis: number): string {
  const m = Math.round(millis)
  return m % 1000 === 0 ? String(m / 1000) : `${m}m`
}

/**
 * Bytes for display with the suffix that gives the smallest exact whole number
 * (`64Mi`, `500M`, `1Gi`), preferring binary suffixes; plain bytes otherwise.
 */
export function formatMemory (bytes: number): string {
  const b = Math.round(bytes)
  if (b === 0) return '0'
  let best = String(b)
  let bestValue = b
  const candidates: Array<[string, number]> = [
    ...Object.entries(BINARY_SUFFIXES).map(([s, p]): [string, number] => [s, 2 ** p]),
    ...Object.entries(DECIMAL_SUFFIXES).map(([s, p]): [string, number] => [s, 10 ** p])
  ]
  for (const [suffix, unit] of candidates) {
    if (b % unit !== 0) continue
    const value = b / unit
    if (value < bestValue) {
      best = `${value}${suffix}`
      bestValue = value
    }
  }
  return best
}

/**
 * Bytes rounded for people, in binary units as Kubernetes writes them: `512Mi`,
 * `1.5Gi`, `512B`. Unlike formatMemory it is not exact, so it reads well for
 * amounts such as free memory.
 */
export function formatMemoryApprox (bytes: number): string {
  const units = ['Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei']
  let value = bytes
  let unit = 'B'
  for (const u of units) {
    if (Math.abs(value) < 1024) break
    value /= 1024
    unit = u
  }
  if (unit === 'B') return `${Math.round(value)}B`
  return `${Number.isInteger(value) ? value : Number(value.toFixed(1))}${unit}`
}
