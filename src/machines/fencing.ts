/**
 * The fencing rule, in one place: which of two copies of one replica ordinal
 * (or of one machine's ownership) survives. Every node decides it alone, from
 * what it hears, and all must agree, so the rule is a total order on copies:
 * the newer epoch wins, and at one epoch (two tenders that raced, or both
 * sides of a partition re-tendering) the copy on the node whose peer id
 * sorts first wins.
 */

/** A copy of a replica: the node it runs on and the epoch it was placed at. */
export interface Copy {
  epoch: number
  peerId: string
}

/** True when `other` supersedes `mine`: `mine` must stop (and, for a machine, drop its state). */
export function supersedes (other: Copy, mine: Copy): boolean {
  return other.epoch > mine.epoch || (other.epoch === mine.epoch && other.peerId < mine.peerId)
}
