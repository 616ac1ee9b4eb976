/**
 * Small DOM helpers: elements built from a tag, attributes and children (no
 * innerHTML anywhere, so nothing from the API is ever parsed as markup).
 */

export type Child = Node | string | number | null | undefined | false
export type Attributes = Record<string, string | number | boolean | null | undefined>

const SVG_NS = 'http://www.w3.org/2000/svg'

function fill<E extends Element> (el: E, attrs: Attributes, children: Child[]): E {
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue
    el.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children) {
    if (child == null || child === false) continue
    el.append(typeof child === 'object' ? child : String(child))
  }
  return el
}

/** An HTML element. */
export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Attributes = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  return fill(document.createElement(tag), attrs, children)
}

/** An SVG element. */
export function s<K extends keyof SVGElementTagNameMap> (tag: K, attrs: Attributes = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children)
}

/** The element with `id`, which the page must have. */
export function byId<E extends HTMLElement = HTMLElement> (id: string): E {
  const el = document.getElementById(id)
  if (el == null) throw new Error(`the page has no #${id}`)
  return el as E
}

let context: CanvasRenderingContext2D | null | undefined

/**
 * The width in pixels of `text` in `font` (a CSS font shorthand), so the
 * layout engine gets boxes and labels of the size they are drawn at.
 */
export function textWidth (text: string, font: string): number {
  context ??= document.createElement('canvas').getContext('2d')
  if (context == null) return text.length * 7.5
  context.font = font
  return Math.ceil(context.measureText(text).width)
}

/** A peer id as people can tell them apart: `…` and its last 6 characters. */
export function shortPeer (peerId: string): string {
  return peerId.length > 10 ? `…${peerId.slice(-6)}` : peerId
}

/** `ms` as a short age: 12s, 4m, 3h, 2d. */
export function age (ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86_400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

/** A wall-clock time with milliseconds, e.g. 14:03:07.291. */
export function clock (ts: number): string {
  const d = new Date(ts)
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
}
