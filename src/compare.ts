/**
 * Orders strings by their UTF-16 code units: the same order on every node
 * (placement's tie-breaks, listings of peer ids and workload ids). `localeCompare` would load ICU's
 * collation on first use (milliseconds, and 3 MB more in memory for a node
 * that lists its peers once).
 */
export function compareCodeUnits (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
