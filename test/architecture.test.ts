/**
 * The shape of src/: no import cycles (between files, or between folders),
 * and no file over 700 lines unless its first line says why.
 *
 * The import graph is read with TypeScript's own scanner (`ts.preProcessFile`),
 * which finds static `import`/`export … from`, `import type`, and dynamic
 * `import('…')` (also `typeof import('…')` in types). Type-only edges are
 * counted on purpose: they vanish at runtime, but a cycle through types still
 * means two modules each need the other to be understood, which is the
 * tangle this check exists to prevent; moving the shared type to the module
 * it belongs to is always possible. Only relative specifiers are followed;
 * a `.js` specifier resolves to the `.ts`/`.tsx` file beside it. The same
 * graph, folded onto the folders of src/, must have no cycle either.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import ts from 'typescript'
import { test } from 'uvu'
import * as assert from 'uvu/assert'

const ROOT = resolve(new URL('..', import.meta.url).pathname)
const SRC = join(ROOT, 'src')
const MAX_LINES = 700
/** A longer file's first line: `// longer than 700 lines: <reason>`. */
const LONG_REASON = /^\/\/ longer than 700 lines: \S.*$/

function sourceFiles (dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...sourceFiles(p))
    else if (/\.tsx?$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p)
  }
  return out.sort()
}

/** The file a relative specifier names, or undefined if it names none in src/. */
function resolveSpecifier (from: string, spec: string): string | undefined {
  const base = resolve(dirname(from), spec)
  const candidates = base.endsWith('.js')
    ? [base.slice(0, -3) + '.ts', base.slice(0, -3) + '.tsx', base]
    : [base, base + '.ts', base + '.tsx', join(base, 'index.ts')]
  return candidates.find(c => c.startsWith(SRC + '/') && existsSync(c) && /\.tsx?$/.test(c))
}

function importGraph (files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of files) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true)
    const targets = new Set<string>()
    for (const ref of info.importedFiles) {
      if (!ref.fileName.startsWith('.')) continue
      const target = resolveSpecifier(file, ref.fileName)
      if (target != null) targets.add(target)
    }
    graph.set(file, [...targets].sort())
  }
  return graph
}

/** Strongly connected components with more than one file (or a file importing itself), by Tarjan. */
function cycles (graph: Map<string, string[]>): string[][] {
  let index = 0
  const indexOf = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (v: string): void => {
    indexOf.set(v, index); low.set(v, index); index++
    stack.push(v); onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!indexOf.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, indexOf.get(w)!))
      }
    }
    if (low.get(v) === indexOf.get(v)) {
      const component: string[] = []
      let w: string
      do { w = stack.pop()!; onStack.delete(w); component.push(w) } while (w !== v)
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort())
    }
  }
  for (const v of graph.keys()) if (!indexOf.has(v)) visit(v)
  return found
}

/** One concrete loop through a component, so the message reads `a → b → a`. */
function loopThrough (graph: Map<string, string[]>, component: string[]): string[] {
  const inside = new Set(component)
  const start = component[0]!
  const prev = new Map<string, string>()
  const queue = [start]
  while (queue.length > 0) {
    const v = queue.shift()!
    for (const w of graph.get(v) ?? []) {
      if (!inside.has(w)) continue
      if (w === start) {
        const path = [v]
        while (path[0] !== start) path.unshift(prev.get(path[0]!)!)
        return [...path, start]
      }
      if (!prev.has(w)) { prev.set(w, v); queue.push(w) }
    }
  }
  return component
}

const files = sourceFiles(SRC)
const rel = (f: string): string => relative(ROOT, f)

test('the import graph of src/ has no cycle', () => {
  const graph = importGraph(files)
  assert.ok(graph.size > 100, `read ${graph.size} files`)
  const edges = [...graph.values()].reduce((n, t) => n + t.length, 0)
  assert.ok(edges > graph.size, `found ${edges} imports`)
  const found = cycles(graph).map(c => {
    const loop = loopThrough(graph, c).map(rel).join(' → ')
    return c.length > 2 ? `${loop} (component of ${c.length}: ${c.map(rel).join(', ')})` : loop
  })
  assert.equal(found, [], `import cycles in src/:\n  ${found.join('\n  ')}`)
})

/**
 * The same graph between the folders of src/ (a file directly in src/ is a
 * node of its own): a folder that imports another folder that imports it
 * back (store → transport → store) is a tangle too, even when no two files
 * form a loop.
 */
function folderGraph (graph: Map<string, string[]>): Map<string, string[]> {
  const folderOf = (f: string): string => join(SRC, relative(SRC, f).split('/')[0]!)
  const folders = new Map<string, Set<string>>()
  for (const [from, targets] of graph) {
    const a = folderOf(from)
    if (!folders.has(a)) folders.set(a, new Set())
    for (const t of targets) if (folderOf(t) !== a) folders.get(a)!.add(folderOf(t))
  }
  return new Map([...folders].map(([k, v]) => [k, [...v].sort()]))
}

/** One import from a file of `from` to a file of `to`, to name in a message. */
function exampleImport (graph: Map<string, string[]>, from: string, to: string): string {
  for (const [f, targets] of graph) {
    if (!f.startsWith(from + '/') && f !== from) continue
    const t = targets.find(t => t.startsWith(to + '/') || t === to)
    if (t != null) return `${rel(f)} → ${rel(t)}`
  }
  return '?'
}

test('the folders of src/ import each other without a cycle', () => {
  const graph = importGraph(files)
  const folders = folderGraph(graph)
  assert.ok(folders.size > 8, `read ${folders.size} folders`)
  const found = cycles(folders).map(c => {
    const loop = loopThrough(folders, c)
    return loop.slice(1).map((to, i) => exampleImport(graph, loop[i]!, to)).join(', then ')
  })
  assert.equal(found, [], `import cycles between folders of src/:\n  ${found.join('\n  ')}`)
})

test(`no file in src/ is over ${MAX_LINES} lines without a reason on its first line`, () => {
  const long: string[] = []
  const offenders: string[] = []
  for (const file of files) {
    const lines = readFileSync(file, 'utf8').split('\n')
    if (lines.at(-1) === '') lines.pop()
    if (lines.length <= MAX_LINES) continue
    long.push(`${rel(file)} (${lines.length}): ${lines[0]}`)
    if (!LONG_REASON.test(lines[0] ?? '')) offenders.push(`${rel(file)} (${lines.length} lines)`)
  }
  console.log(`files over ${MAX_LINES} lines:\n  ${long.join('\n  ')}`)
  assert.equal(offenders, [], `over ${MAX_LINES} lines with no "// longer than ${MAX_LINES} lines: <reason>" first line:\n  ${offenders.join('\n  ')}`)
})

/** The workload runtime is a facade over its planes (src/scheduling/, src/stateless/, …), not a place for their logic. */
const FACADE = join(SRC, 'node/workload-runtime.ts')
const FACADE_MAX_LINES = 450

test(`src/node/workload-runtime.ts is a facade of at most ${FACADE_MAX_LINES} lines`, () => {
  const lines = readFileSync(FACADE, 'utf8').split('\n')
  if (lines.at(-1) === '') lines.pop()
  assert.ok(lines.length <= FACADE_MAX_LINES, `${rel(FACADE)} has ${lines.length} lines: move the logic into its plane (src/scheduling/, src/stateless/, src/stateful/, src/node/*)`)
  assert.ok(!LONG_REASON.test(lines[0] ?? ''), `${rel(FACADE)} still carries a "longer than ${MAX_LINES} lines" reason`)
})

test('the checker sees a cycle and a resolved .js specifier', () => {
  const a = join(SRC, 'a.ts'); const b = join(SRC, 'b.ts'); const c = join(SRC, 'c.ts')
  const graph = new Map([[a, [b]], [b, [c]], [c, [a]]])
  assert.equal(cycles(graph), [[a, b, c]])
  assert.equal(loopThrough(graph, [a, b, c]), [a, b, c, a])
  assert.equal(cycles(new Map([[a, [b]], [b, []]])), [])
  assert.is(resolveSpecifier(join(SRC, 'index.ts'), './workloads/define.js'), join(SRC, 'workloads/define.ts'))
  const info = ts.preProcessFile("import type { X } from './x.js'\nexport { y } from './y.js'\nconst z = await import('./z.js')\n", true, true)
  assert.equal(info.importedFiles.map(f => f.fileName), ['./x.js', './y.js', './z.js'])
})

test.run()
