/**
 * The scale benchmark's and the simulation's figures as small multiples (one
 * panel per figure, against node count), rendered to SVG headless with
 * vega-lite + vega (no canvas needed for SVG). Rerun from a result file:
 *   node --import tsx bench/plot.ts bench/results/scale-latest.json docs/images/scale.svg
 *   node --import tsx bench/plot.ts bench/results/sim-latest.json docs/images/sim.svg
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

const PANELS: Array<Panel<ScaleResults['sizes'][number]>> = [
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

interface Panel<S> { title: string, unit: string, series: Array<[string, (s: S) => number]> }

/** One line chart per figure, each with its own y scale and legend; x: node count (`log` for sizes spanning decades). */
function smallMultiples<S extends { nodes: number }> (o: { title: string, subtitle: string, xTitle: string, log?: boolean, sizes: S[], panels: Array<Panel<S>> }): TopLevelSpec {
  const nodes = o.sizes.map(s => s.nodes)
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: o.title, subtitle: o.subtitle },
    background: 'white',
    columns: 3,
    concat: o.panels.map(panel => {
      const values: Point[] = panel.series.flatMap(([series, get]) => o.sizes.map(s => ({ panel: panel.title, series, nodes: s.nodes, value: get(s) })))
      return {
        title: panel.title,
        width: 230,
        height: 170,
        data: { values: values.filter(v => Number.isFinite(v.value)) },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'nodes', type: 'quantitative', title: o.xTitle, scale: o.log === true ? { type: 'log' } : { domain: [0, Math.max(...nodes)] }, axis: { values: nodes } },
          y: { field: 'value', type: 'quantitative', title: panel.unit, scale: { zero: true } },
          color: { field: 'series', type: 'nominal', title: null, sort: panel.series.map(([s]) => s), legend: { orient: 'bottom', columns: 2 } },
          tooltip: [{ field: 'series' }, { field: 'nodes' }, { field: 'value', format: '.1f' }]
        }
      }
    }),
    resolve: { scale: { color: 'independent', y: 'independent' }, legend: { color: 'independent' } }
  }
}

/** The scale bench's vega-lite spec. */
export function scaleSpec (results: ScaleResults): TopLevelSpec {
  const workloads = results.sizes[0]?.apply.workloads ?? 0
  return smallMultiples({
    title: `BeeMesh at scale: node processes on one 2-core machine${results.at != null ? ` (${results.at.slice(0, 10)})` : ''}`,
    subtitle: `apply → running with ${workloads} stateless workloads; x: node processes in the mesh`,
    xTitle: 'node processes',
    sizes: results.sizes,
    panels: PANELS
  })
}

/** What the plot reads from a `sim` result file (sim/run.ts writes more). */
export interface SimResults {
  settings?: { placements: number, rate: number, replicas: number, profile: string }
  sizes: Array<{
    nodes: number
    messagesPerPlacement: number
    recordGossipsPerPlacement: number
    placementP50Ms: number
    placementP99Ms: number
    detectionP50Ms: number
    detectionP99Ms: number
    restMessagesPerNodePerSec: number
  }>
}

const SIM_PANELS: Array<Panel<SimResults['sizes'][number]>> = [
  { title: 'Messages a placement', unit: 'messages', series: [['tender, bid, award, confirmation', s => s.messagesPerPlacement]] },
  { title: 'Record gossip a placement', unit: 'deliveries', series: [['Pending + Running record', s => s.recordGossipsPerPlacement]] },
  { title: 'Membership at rest', unit: 'messages a node a second', series: [['pings and acks', s => s.restMessagesPerNodePerSec]] },
  { title: 'Failure detected', unit: 's after the kill or silence', series: [['p50', s => s.detectionP50Ms / 1000], ['p99', s => s.detectionP99Ms / 1000]] },
  { title: 'Placement', unit: 'ms, apply → running', series: [['p50', s => s.placementP50Ms], ['p99', s => s.placementP99Ms]] }
]

/** The simulation's vega-lite spec. */
export function simSpec (results: SimResults): TopLevelSpec {
  const o = results.settings
  return smallMultiples({
    title: 'BeeMesh simulated: the real placement and failure-detection code on a virtual clock',
    subtitle: o != null ? `${o.placements} placements at ${o.rate}/s, ${o.replicas} replica each, ${o.profile} network; x: nodes (log)` : 'x: nodes (log)',
    xTitle: 'nodes',
    log: true,
    sizes: results.sizes,
    panels: SIM_PANELS
  })
}

/** Renders a vega-lite spec to SVG text. */
async function render (spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

/** The scale bench's results as SVG text. */
export async function plotScale (results: ScaleResults): Promise<string> { return await render(scaleSpec(results)) }

/** The simulation's results as SVG text. */
export async function plotSim (results: SimResults): Promise<string> { return await render(simSpec(results)) }

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [input, output] = process.argv.slice(2)
  if (input == null || output == null) {
    process.stderr.write('usage: node --import tsx bench/plot.ts <scale or sim result JSON> <output SVG>\n')
    process.exit(2)
  }
  const results = JSON.parse(await readFile(input, 'utf8')) as (ScaleResults | SimResults) & { benchmark?: string }
  await writeFile(output, results.benchmark === 'sim' ? await plotSim(results as SimResults) : await plotScale(results as ScaleResults))
  process.stdout.write(`wrote ${output}\n`)
}
