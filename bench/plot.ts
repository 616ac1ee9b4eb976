/**
 * The scale benchmark's figures as small multiples (one panel per figure,
 * against node count), rendered to SVG headless with vega-lite + vega (no
 * canvas needed for SVG). Rerun from a result file:
 *   node --import tsx bench/plot.ts bench/results/scale-latest.json docs/images/scale.svg
 */
import { readFile, writeFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'

/** What the plot reads from a `scale` result file (bench/scale.ts writes more). */
export interface ScaleResults {
  benchmark?: string
  at?: string
  sizes: Array<{
    nodes: number
    formation: { spawnMs: number, dhtMs: number, meshMs: number, joinMs?: { p50: number, max: number } }
    dht: { getMs: { p50: number, p99: number }, rawGetMs: { p50: number, p99: number } }
    apply: { latencyMs: { p50: number, p99: number }, workloads: number }
    rssMb: { idle: { p50: number, max: number }, afterWorkloads: { p50: number, max: number }, rawIdle: number }
    cpuPercent: { idle: { p50: number, max: number }, afterWorkloads: { p50: number, max: number }, rawIdle: number }
  }>
}

interface Point { panel: string, series: string, nodes: number, value: number }

const PANELS: Array<{ title: string, unit: string, series: Array<[string, (s: ScaleResults['sizes'][number]) => number]> }> = [
  {
    title: 'Formation',
    unit: 's from first spawn',
    series: [
      ['all spawned', s => s.formation.spawnMs / 1000],
      ['DHT neighbours', s => s.formation.dhtMs / 1000],
      ['everyone hears everyone', s => s.formation.meshMs / 1000]
    ]
  },
  {
    title: 'A node joins',
    unit: 's after it starts',
    series: [
      ['p50', s => (s.formation.joinMs?.p50 ?? NaN) / 1000],
      ['max', s => (s.formation.joinMs?.max ?? NaN) / 1000]
    ]
  },
  {
    title: 'DHT get',
    unit: 'ms',
    series: [
      ['API p50', s => s.dht.getMs.p50],
      ['API p99', s => s.dht.getMs.p99],
      ['plain kad-dht p50', s => s.dht.rawGetMs.p50],
      ['plain kad-dht p99', s => s.dht.rawGetMs.p99]
    ]
  },
  {
    title: 'apply → running',
    unit: 'ms',
    series: [
      ['p50', s => s.apply.latencyMs.p50],
      ['p99', s => s.apply.latencyMs.p99]
    ]
  },
  {
    title: 'RSS per node process',
    unit: 'MB',
    series: [
      ['idle p50', s => s.rssMb.idle.p50],
      ['idle max', s => s.rssMb.idle.max],
      ['with workloads p50', s => s.rssMb.afterWorkloads.p50],
      ['with workloads max', s => s.rssMb.afterWorkloads.max],
      ['plain libp2p', s => s.rssMb.rawIdle]
    ]
  },
  {
    title: 'CPU per node at rest',
    unit: '% of one core',
    series: [
      ['idle p50', s => s.cpuPercent.idle.p50],
      ['idle max', s => s.cpuPercent.idle.max],
      ['with workloads p50', s => s.cpuPercent.afterWorkloads.p50],
      ['plain libp2p', s => s.cpuPercent.rawIdle]
    ]
  }
]

/** The vega-lite spec: one line chart per figure, each with its own y scale and legend. */
export function scaleSpec (results: ScaleResults): TopLevelSpec {
  const nodes = results.sizes.map(s => s.nodes)
  const workloads = results.sizes[0]?.apply.workloads ?? 0
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `BeeMesh at scale: node processes on one 2-core machine${results.at != null ? ` (${results.at.slice(0, 10)})` : ''}`, subtitle: `apply → running with ${workloads} stateless workloads; x: node processes in the mesh` },
    background: 'white',
    columns: 3,
    concat: PANELS.map(panel => {
      const values: Point[] = panel.series.flatMap(([series, get]) => results.sizes.map(s => ({ panel: panel.title, series, nodes: s.nodes, value: get(s) })))
      return {
        title: panel.title,
        width: 230,
        height: 170,
        data: { values: values.filter(v => Number.isFinite(v.value)) },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'nodes', type: 'quantitative', title: 'node processes', scale: { domain: [0, Math.max(...nodes)] }, axis: { values: nodes } },
          y: { field: 'value', type: 'quantitative', title: panel.unit, scale: { zero: true } },
          color: { field: 'series', type: 'nominal', title: null, sort: panel.series.map(([s]) => s), legend: { orient: 'bottom', columns: 2 } },
          tooltip: [{ field: 'series' }, { field: 'nodes' }, { field: 'value', format: '.1f' }]
        }
      }
    }),
    resolve: { scale: { color: 'independent', y: 'independent' }, legend: { color: 'independent' } }
  }
}

/** Renders the results to SVG text. */
export async function plotScale (results: ScaleResults): Promise<string> {
  const view = new vega.View(vega.parse(compile(scaleSpec(results)).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [input, output] = process.argv.slice(2)
  if (input == null || output == null) {
    process.stderr.write('usage: node --import tsx bench/plot.ts <scale result JSON> <output SVG>\n')
    process.exit(2)
  }
  await writeFile(output, await plotScale(JSON.parse(await readFile(input, 'utf8')) as ScaleResults))
  process.stdout.write(`wrote ${output}\n`)
}
