import { Command, Option } from 'commander'
import { BeeMeshError, describeError } from '../errors.js'
import { VERSION } from '../actors/node-runtime.js'
import { resolveApiUrl } from './api-client.js'
import { peers, publish, recordGet, recordPut, status, subscribe, type ClientOptions } from './commands/client.js'
import { DEFAULT_DATA_DIR, nodeStart } from './commands/node-start.js'
import { up } from './commands/up.js'
import { LOG_LEVELS } from './logging.js'
import { OUTPUT_FORMATS, parseOutputFormat } from './output.js'

const collect = (value: string, previous: string[]): string[] => [...previous, value]

function outputOption (): Option {
  return new Option('-o, --output <format>', `output format: ${OUTPUT_FORMATS.join('|')}`).default('table').argParser(parseOutputFormat)
}

function clientOptions (cmd: Command): ClientOptions {
  const all = cmd.optsWithGlobals<{ api?: string, output: ClientOptions['output'] }>()
  return { api: resolveApiUrl(all.api), output: all.output }
}

export function buildProgram (): Command {
  const program = new Command('beemesh')
    .description('BeeMesh: run workloads on a peer-to-peer mesh of equal nodes, with no control plane.')
    .version(VERSION)
    .option('--api <url>', 'control API of the node to talk to (env BEEMESH_API)', undefined)
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', `
Examples:
  beemesh up --nodes 3                 start a local 3-node mesh
  beemesh status --api http://127.0.0.1:7701
  beemesh peers -o json
  beemesh node start --listen /ip4/0.0.0.0/tcp/4001 --bootstrap /ip4/10.0.0.1/tcp/4001/p2p/12D3Koo…`)

  const node = program.command('node').description('run a mesh node')
  node.command('start')
    .description('run one node in the foreground until SIGTERM or Ctrl-C')
    .option('--listen <multiaddr>', 'address to listen on (repeatable)', collect, [])
    .option('--announce <multiaddr>', 'address to announce instead of the listen addresses (repeatable)', collect, [])
    .option('--bootstrap <multiaddr>', 'peer to join through, ending in /p2p/<peer id> (repeatable)', collect, [])
    .option('--data-dir <dir>', 'where the identity key and database live', DEFAULT_DATA_DIR)
    .option('--api-host <host>', 'interface for the control API', '127.0.0.1')
    .option('--api-port <port>', 'port for the control API', '7700')
    .option('--private-addresses', 'keep loopback/private addresses in DHT records (default: when listening on one)')
    .option('--no-private-addresses', 'drop loopback/private addresses from DHT records')
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr as JSON)').choices(LOG_LEVELS).default('info'))
    .action(async (opts: { listen: string[], announce: string[], bootstrap: string[], dataDir: string, apiHost: string, apiPort: string, privateAddresses?: boolean, logLevel: string }, cmd: Command) => {
      const explicit = cmd.getOptionValueSource('privateAddresses') === 'cli'
      await nodeStart({ ...opts, listen: opts.listen.length > 0 ? opts.listen : ['/ip4/0.0.0.0/tcp/4001'], privateAddresses: explicit ? opts.privateAddresses : undefined })
    })

  program.command('up')
    .description('start a local mesh of N node processes on loopback (the embedded default)')
    .option('-n, --nodes <count>', 'how many nodes', '3')
    .option('--api-port <port>', 'API port of node 0; node i uses port+i', '7700')
    .option('--data-dir <dir>', 'parent of the nodes\' data dirs (default ~/.beemesh/local)')
    .option('--timeout <seconds>', 'give up if the mesh is not ready by then', '60')
    .addOption(new Option('--log-level <level>', 'log level of the nodes (logs go to <data dir>/node-i/node.log)').choices(LOG_LEVELS).default('info'))
    .action(async (opts: { nodes: string, apiPort: string, dataDir?: string, timeout: string, logLevel: string }) => { await up(opts) })

  program.command('status')
    .description('show the node\'s peer id, state, addresses, uptime and peer count')
    .addOption(outputOption())
    .action(async (_opts: unknown, cmd: Command) => { await status(clientOptions(cmd)) })

  program.command('peers')
    .description('list the peers the node is connected to')
    .addOption(outputOption())
    .action(async (_opts: unknown, cmd: Command) => { await peers(clientOptions(cmd)) })

  const record = program.command('record').description('read and write signed DHT records (/beemesh/<kind>/<id>)')
  record.command('put <key> <value>')
    .description('sign and store a record on the DHT')
    .addOption(outputOption())
    .action(async (key: string, value: string, _opts: unknown, cmd: Command) => { await recordPut(key, value, clientOptions(cmd)) })
  record.command('get <key>')
    .description('read the newest valid record for a key')
    .addOption(outputOption())
    .action(async (key: string, _opts: unknown, cmd: Command) => { await recordGet(key, clientOptions(cmd)) })

  program.command('publish <topic> <json>')
    .description('publish a JSON message on a gossipsub topic')
    .addOption(outputOption())
    .action(async (topic: string, json: string, _opts: unknown, cmd: Command) => { await publish(topic, json, clientOptions(cmd)) })

  program.command('subscribe <topic>')
    .description('print a topic\'s messages as JSON lines')
    .option('--count <n>', 'exit after n messages')
    .action(async (topic: string, opts: { count?: string }, cmd: Command) => {
      await subscribe(topic, { ...clientOptions(cmd), output: 'json', count: opts.count })
    })

  return program
}

/** Runs the CLI; every failure is one `beemesh: error: …` line and a non-zero exit code. */
export async function main (argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv)
  } catch (err) {
    process.stderr.write(`beemesh: error: ${describeError(err)}\n`)
    process.exitCode = err instanceof BeeMeshError ? err.exitCode : 1
  }
}
