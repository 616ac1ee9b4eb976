import { Command, Option } from 'commander'
import { availableParallelism, totalmem } from 'node:os'
import { BeeMeshError, describeError, InvalidArgumentError } from '../errors.js'
import { VERSION } from '../version.js'
import { resolveApiUrl, useCa, useCredentials } from './api-client.js'
import type { ClientOptions } from './commands/client.js'
import type { InspectOptions } from './commands/inspect.js'
import type { WorkloadCliOptions } from './commands/workloads.js'
import { DEFAULT_CERT_TTL, DEFAULT_CREDENTIAL_TTL, DEFAULT_DATA_DIR, DEFAULT_INSPECT_PORT, DEFAULT_MESH_NAME, DEFAULT_TOKEN_TTL, DEFAULT_TRUST_DIR, DEFAULT_UI_TOKEN_TTL, LOG_LEVELS } from './defaults.js'
import { OUTPUT_FORMATS, parseOutputFormat, type OutputFormat } from './output.js'

// Every command's module is imported when that command runs, not before: `beemesh --help`
// and the commands that only talk HTTP never load libp2p, esbuild, dockerode or the
// Kubernetes parser (what a command's definition needs is in ./defaults.js).

const collect = (value: string, previous: string[]): string[] => [...previous, value]

function outputOption (): Option {
  return new Option('-o, --output <format>', `output format: ${OUTPUT_FORMATS.join('|')}`).default('table').argParser(parseOutputFormat)
}

type Resource = 'workloads' | 'nodes'
const RESOURCE_ALIASES: Record<string, Resource> = { workload: 'workloads', workloads: 'workloads', wl: 'workloads', node: 'nodes', nodes: 'nodes', no: 'nodes' }

function resource (value: string, allowed: Resource[] = ['workloads']): Resource {
  const r = RESOURCE_ALIASES[value]
  if (r == null || !allowed.includes(r)) throw new InvalidArgumentError(`unknown resource type "${value}"; known: ${allowed.map(a => a === 'workloads' ? 'workloads (workload, wl)' : 'nodes (node, no)').join(', ')}`)
  return r
}

function wideOutputOption (): Option {
  return new Option('-o, --output <format>', 'output format: table|wide|json|yaml').default('table').argParser((v: string) => v === 'wide' ? 'wide' : parseOutputFormat(v))
}

function workloadOptions (cmd: Command): WorkloadCliOptions {
  const all = cmd.optsWithGlobals<{ api?: string, output: WorkloadCliOptions['output'] }>()
  return { api: resolveApiUrl(all.api), output: all.output }
}

function parseLabel (value: string, previous: Record<string, string>): Record<string, string> {
  const m = /^([A-Za-z0-9][-A-Za-z0-9_./]{0,252})=([-A-Za-z0-9_.]{0,63})$/.exec(value)
  if (m == null) throw new InvalidArgumentError(`--label must be key=value (Kubernetes label syntax), got "${value}"`)
  return { ...previous, [m[1]!]: m[2]! }
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
    .option('--key <file>', 'deployer key to sign manifests and API requests with (env BEEMESH_KEY; default ~/.config/beemesh/deployer.key when it exists)')
    .option('--token <token>', 'bearer token to send instead (env BEEMESH_TOKEN; make one with `beemesh token`)')
    .option('--ca <file>', 'the mesh CA certificate that verifies an https --api (env BEEMESH_CA; default: `beemesh up`\'s, when it exists)')
    .option('--mesh <mesh.json|root id>', 'the mesh the tokens made from --key are for (env BEEMESH_MESH; default: the `beemesh up` mesh serving --api, else ./beemesh-trust/mesh.json)')
    .hook('preAction', (_cmd, action) => {
      useCa(action.optsWithGlobals<{ ca?: string }>().ca)
      const g = action.optsWithGlobals<{ key?: string, token?: string, mesh?: string }>()
      useCredentials({ ...(g.token != null ? { token: g.token } : {}), ...(g.mesh != null ? { mesh: g.mesh } : {}), ...(g.key != null && action.name() !== 'keygen' && action.name() !== 'identity' && action.name() !== 'token' ? { keyPath: g.key } : {}) })
    })
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
    .option('--metrics-listen <host:port>', 'also serve GET /metrics, and nothing else, without a token on this address (for a Prometheus that sends none)')
    .option('--private-addresses', 'keep loopback/private addresses in DHT records (default: when listening on one)')
    .option('--no-private-addresses', 'drop loopback/private addresses from DHT records')
    .option('--cpu <quantity>', 'CPU this node offers to workloads (e.g. 2, 1500m)', String(availableParallelism()))
    .option('--memory <quantity>', 'memory this node offers to workloads (e.g. 4Gi)', `${Math.floor(totalmem() / 2 ** 20)}Mi`)
    .option('--label <key=value>', 'node label for workload node selectors (repeatable)', parseLabel, {})
    .option('--tender-window-ms <ms>', 'longest time a tender waits for bids (it closes early once every live peer answered)', '250')
    .option('--service-cidr <a.b.0.0/16>', 'where this node\'s service proxy puts service addresses (the same on every node of a mesh, unless several nodes share a host)', '198.18.0.0/16')
    .option('--container-socket <path>', 'Docker Engine API socket (dockerd, or podman system service) for container workloads (default: $DOCKER_HOST)')
    .option('--no-containers', 'take no container workloads, even with DOCKER_HOST set')
    .option('--trust <file>', 'the mesh\'s trust file, mesh.json from `beemesh init` (env BEEMESH_TRUST)')
    .option('--credential <file>', 'this node\'s membership credential (`beemesh credential issue`)')
    .option('--issue-with <root.key>', 'dev/test: issue this node its own credential with the root key at start (kept as <data dir>/credential.json)')
    .option('--allow-unconfined', 'on a host without bubblewrap or user namespaces, run workload code in worker threads of the node instead of refusing it (no security boundary)', false)
    .option('--message-max-age <seconds>', 'sealed messages older than this are refused as stale, and a replay is recognised for this long plus 10 s (the same on every node; more memory for the replay window)', '30')
    .option('--warm-sandboxes <n>', 'blank confined sandboxes kept ready per kind in use, so a replica starts without booting one (0: none)', '1')
    .option('--tls-cert <file>', 'the API\'s TLS certificate chain, PEM (`beemesh cert issue`)')
    .option('--tls-key <file>', 'the private key of --tls-cert, PEM')
    .option('--api-insecure-http', 'also answer plain HTTP, to loopback callers only (refused with a non-loopback --api-host)', false)
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr as JSON)').choices(LOG_LEVELS).default('info'))
    .action(async (opts: { listen: string[], announce: string[], bootstrap: string[], dataDir: string, apiHost: string, apiPort: string, privateAddresses?: boolean, logLevel: string, cpu: string, memory: string, label: Record<string, string>, tenderWindowMs: string, serviceCidr: string, containerSocket?: string, containers: boolean, trust?: string, credential?: string, issueWith?: string, metricsListen?: string, allowUnconfined: boolean, warmSandboxes: string, messageMaxAge: string, tlsCert?: string, tlsKey?: string, apiInsecureHttp: boolean }, cmd: Command) => {
      const explicit = cmd.getOptionValueSource('privateAddresses') === 'cli'
      const { containers, containerSocket, ...rest } = opts
      await (await import('./commands/node-start.js')).nodeStart({ ...rest, listen: opts.listen.length > 0 ? opts.listen : ['/ip4/0.0.0.0/tcp/4001'], privateAddresses: explicit ? opts.privateAddresses : undefined, containerSocket: containers ? containerSocket : false })
    })

  // `beemesh inspect`, and `--inspect [ws-url]` on `node start` (docs/inspect.md)
  node.commands.find(c => c.name() === 'start')?.addOption(new Option('--inspect [ws-url]', `send the inspection events of every actor of this node (node, schedulers, pods, stateful workloads' machines) to the relay of \`beemesh inspect\` (default ws://127.0.0.1:${DEFAULT_INSPECT_PORT})`))
  program.command('inspect')
    .description('run the Stately inspector relay that `node start --inspect` sends to, until Ctrl-C')
    .option('--port <port>', 'port of the relay (WebSocket and its page)', String(DEFAULT_INSPECT_PORT))
    .option('--host <host>', 'the address nodes and browsers reach the relay at, used in the URLs it prints (it listens on every interface)', '127.0.0.1')
    .addHelpText('after', `
Then start nodes with --inspect ws://<host>:<port> and open http://localhost:<port>
(the hosted inspector, https://stately.ai/inspect: needs internet). See docs/inspect.md.`)
    .action(async (opts: InspectOptions) => { await (await import('./commands/inspect.js')).inspect(opts) })

  program.command('up')
    .description('start a local mesh of N node processes on loopback (the embedded default)')
    .option('-n, --nodes <count>', 'how many nodes', '3')
    .option('--api-port <port>', 'API port of node 0; node i uses port+i', '7700')
    .option('--data-dir <dir>', 'parent of the nodes\' data dirs (default ~/.beemesh/local)')
    .option('--timeout <seconds>', 'give up if the mesh is not ready by then', '60')
    .addOption(new Option('--log-level <level>', 'log level of the nodes (logs go to <data dir>/node-i/node.log)').choices(LOG_LEVELS).default('info'))
    .option('--example <dir>', 'once ready, apply the workload modules in <dir>, publish an order a second and show the logs')
    .action(async (opts: { nodes: string, apiPort: string, dataDir?: string, timeout: string, logLevel: string, example?: string }) => {
      const example = opts.example
      await (await import('./commands/up.js')).up(opts, example != null ? async nodes => { await (await import('./commands/example.js')).runExample(example, nodes) } : undefined)
    })

  program.command('apply <file>')
    .description('bundle a workload module (.ts/.js) or manifest (.yaml) and place it on the mesh')
    .option('--no-wait', 'return once the node accepted it, without waiting for the replicas to run')
    .addOption(wideOutputOption())
    .addHelpText('after', `
A module default-exports defineWorkload({ name, kind: 'stateless', topics, handler, ... });
a manifest (apiVersion beemesh.io/v1, kind Actor) points at one with spec.module.
Waits until every replica runs and prints where each landed.`)
    .action(async (file: string, opts: { wait: boolean }, cmd: Command) => { await (await import('./commands/workloads.js')).apply(file, { ...workloadOptions(cmd), wait: opts.wait }) })

  program.command('upload <file>')
    .description('bundle a workload module (.ts/.js) or Actor manifest (.yaml) and store it on the mesh without running it; prints the beemesh.io/v1 Actor or Machine naming it, for kubectl apply')
    .action(async (file: string, _opts: unknown, cmd: Command) => { await (await import('./commands/workloads.js')).upload(file, workloadOptions(cmd)) })

  program.command('get <resource>')
    .description('list workloads (status and placement) or nodes (capacity, allocation, labels); resource: workloads | nodes')
    .addOption(wideOutputOption())
    .action(async (res: string, _opts: unknown, cmd: Command) => {
      if (resource(res, ['workloads', 'nodes']) === 'nodes') await (await import('./commands/workloads.js')).getNodes(workloadOptions(cmd))
      else await (await import('./commands/workloads.js')).getWorkloads(workloadOptions(cmd))
    })

  program.command('describe <resource> <name>')
    .description('show a workload\'s spec, placement, epoch and recent scheduling events')
    .addOption(outputOption())
    .action(async (res: string, name: string, _opts: unknown, cmd: Command) => { resource(res); await (await import('./commands/workloads.js')).describeWorkload(name, workloadOptions(cmd)) })

  program.command('delete <resource> <name>')
    .description('stop every replica of a workload and remove it from the mesh')
    .action(async (res: string, name: string, _opts: unknown, cmd: Command) => { resource(res); await (await import('./commands/workloads.js')).deleteWorkload(name, { ...workloadOptions(cmd), output: 'table' }) })

  program.command('logs <name>')
    .description('print the log lines of every replica of a workload, in time order')
    .option('-f, --follow', 'keep printing new lines', false)
    .option('--tail <n>', 'only the last n lines')
    .addOption(new Option('-o, --output <format>', 'text or json (one JSON object per line)').choices(['text', 'json']).default('text'))
    .action(async (name: string, opts: { follow: boolean, tail?: string, output: string }, cmd: Command) => {
      await (await import('./commands/workloads.js')).logs(name, { ...workloadOptions(cmd), output: opts.output === 'json' ? 'json' : 'table', follow: opts.follow, tail: opts.tail })
    })

  program.command('send <name> <event>')
    .description('send an event to a stateful workload and print the state it led to, once durable')
    .option('--id <id>', 'idempotency key: a retried send with the same id is applied at most once (default: a new UUID)')
    .option('--timeout <ms>', 'how long to keep trying while the owner fails over', '15000')
    .addOption(outputOption())
    .addHelpText('after', `
<event> is JSON with a string "type", e.g. '{"type":"inc","by":2}', or just a type: inc.
Exit codes: 0 acknowledged; 1 not handled in the current state, completed, unknown workload,
bad event, or no owner reachable in time (nothing was acknowledged).`)
    .action(async (name: string, event: string, opts: { id?: string, timeout?: string }, cmd: Command) => { await (await import('./commands/machines.js')).send(name, event, { ...workloadOptions(cmd), ...opts }) })

  program.command('services [name]')
    .alias('svc')
    .description('list services (address on every node, ready replicas), or show one with its replicas and its DHT records')
    .addOption(outputOption())
    .action(async (name: string | undefined, _opts: unknown, cmd: Command) => { await (await import('./commands/services.js')).services(name, workloadOptions(cmd)) })

  program.command('call <service> [json]')
    .description('call a service as your deployer key and print its reply')
    .option('--timeout <ms>', 'how long the call may take, retries included', '5000')
    .option('--idempotent', 'the request may run more than once: retry it on another replica after a failure mid-call')
    .option('--retries <n>', 'attempts after the first, on other replicas (default 2)')
    .addOption(outputOption())
    .addHelpText('after', `
<service> is <name> (namespace default) or <namespace>/<name>; [json] is the request, e.g. '{"sku":"a1"}'.
A stateful workload's service takes an event ({"type":"coin"}) and replies with the state it led to.
Exit codes: 0 answered; 1 unknown service, no healthy replica, timed out, denied by policy,
request too large, or the handler failed (the message names which).`)
    .action(async (service: string, json: string | undefined, opts: { timeout?: string, idempotent?: boolean, retries?: string }, cmd: Command) => { await (await import('./commands/services.js')).call(service, json, { ...workloadOptions(cmd), ...opts }) })

  program.command('state <name>')
    .description('show a stateful workload\'s state value, context, owner, epoch and sequence')
    .addOption(outputOption())
    .action(async (name: string, _opts: unknown, cmd: Command) => { await (await import('./commands/machines.js')).state(name, workloadOptions(cmd)) })

  const traceCommand = program.command('trace')
    .argument('<name>')
    .description('print a stateful workload\'s recent transitions; -f keeps printing them as they happen; `trace export` writes its whole trace')
    .option('-f, --follow', 'keep printing transitions as they become durable', false)
    .addOption(new Option('-o, --output <format>', 'text or json (one JSON object per line)').choices(['text', 'json']).default('text'))
    .action(async (name: string, opts: { follow: boolean, output: string }, cmd: Command) => {
      await (await import('./commands/machines.js')).trace(name, { ...workloadOptions(cmd), output: opts.output === 'json' ? 'json' : 'table', follow: opts.follow })
    })
  traceCommand.command('export <name>')
    .description('write a stateful workload\'s whole trace as JSONL (events in, sender, seq, epoch, state value and context), across failovers: beemesh trace export counter > trace.jsonl')
    .action(async (name: string, _opts: unknown, cmd: Command) => { await (await import('./commands/machines.js')).exportTrace(name, workloadOptions(cmd)) })

  program.command('status')
    .description('show the node\'s peer id, state, addresses, uptime and peer count')
    .addOption(outputOption())
    .action(async (_opts: unknown, cmd: Command) => { await (await import('./commands/client.js')).status(clientOptions(cmd)) })

  program.command('peers')
    .description('list the peers the node is connected to')
    .addOption(outputOption())
    .action(async (_opts: unknown, cmd: Command) => { await (await import('./commands/client.js')).peers(clientOptions(cmd)) })

  program.command('kubeconfig')
    .description('print a kubeconfig for kubectl: cluster = the node\'s API URL (--api), context beemesh')
    .option('--write <file>', 'write it to this file (mode 0600) instead of printing it')
    .action(async (opts: { write?: string }, cmd: Command) => {
      await (await import('./commands/kubeconfig.js')).printKubeconfig(resolveApiUrl(cmd.optsWithGlobals<{ api?: string }>().api), opts)
    })

  program.command('ui')
    .description('print the URL of the node\'s web view (mesh, workloads, live statecharts) and open it in a browser')
    .option('--no-open', 'only print the URL')
    .option('--ttl <duration>', 'lifetime of the token made from the deployer key for the page: 30d, 12h, 90m', DEFAULT_UI_TOKEN_TTL)
    .addHelpText('after', `
The URL is http://<api>/ui/ with a bearer token in its fragment (#token=…),
which the browser never sends to a server: the token \`beemesh up\` wrote for
its mesh, or one made from the deployer key (--key), or --token. Without one
the page cannot read anything (the API has no anonymous access).`)
    .action(async (opts: { open: boolean, ttl: string }, cmd: Command) => {
      const all = cmd.optsWithGlobals<{ api?: string, token?: string }>()
      const token = all.token ?? process.env.BEEMESH_TOKEN
      await (await import('./commands/ui.js')).ui({ api: resolveApiUrl(all.api), open: opts.open, ttl: opts.ttl, ...(token != null ? { token } : {}) })
    })

  const record = program.command('record').description('read and write signed DHT records (/beemesh/<kind>/<id>)')
  record.command('put <key> <value>')
    .description('sign and store a record on the DHT')
    .addOption(outputOption())
    .action(async (key: string, value: string, _opts: unknown, cmd: Command) => { await (await import('./commands/client.js')).recordPut(key, value, clientOptions(cmd)) })
  record.command('get <key>')
    .description('read the newest valid record for a key')
    .addOption(outputOption())
    .action(async (key: string, _opts: unknown, cmd: Command) => { await (await import('./commands/client.js')).recordGet(key, clientOptions(cmd)) })

  program.command('publish <topic> <json>')
    .description('publish a JSON message on a gossipsub topic')
    .addOption(outputOption())
    .action(async (topic: string, json: string, _opts: unknown, cmd: Command) => { await (await import('./commands/client.js')).publish(topic, json, clientOptions(cmd)) })

  program.command('subscribe <topic>')
    .description('print a topic\'s messages as JSON lines')
    .option('--count <n>', 'exit after n messages')
    .action(async (topic: string, opts: { count?: string }, cmd: Command) => {
      await (await import('./commands/client.js')).subscribe(topic, { ...clientOptions(cmd), output: 'json', count: opts.count })
    })

  // ---- trust: deployer keys, the mesh's trust root, credentials, tokens, policies
  program.command('keygen')
    .description('create an Ed25519 deployer key file (mode 0600); its id is the principal policies name')
    .option('--out <file>', 'where to write it (default $BEEMESH_KEY, else ~/.config/beemesh/deployer.key)')
    .option('--force', 'replace an existing key file (its old id stops working)', false)
    .addOption(outputOption())
    .action(async (opts: { out?: string, force: boolean, output: OutputFormat }) => { await (await import('./commands/trust.js')).keygen(opts) })

  program.command('identity')
    .description('print the deployer key id of a key file')
    .option('--key <file>', 'deployer key file (default $BEEMESH_KEY, else ~/.config/beemesh/deployer.key)')
    .addOption(outputOption())
    // --key is also a global option, which takes the value: read both
    .action(async (_opts: unknown, cmd: Command) => { await (await import('./commands/trust.js')).identity(cmd.optsWithGlobals<{ key?: string, output: OutputFormat }>()) })

  program.command('init')
    .description('create a mesh trust root: root key, default policy and the mesh file nodes start with')
    .option('--dir <dir>', 'where root.key, policy.yaml and mesh.json go', DEFAULT_TRUST_DIR)
    .option('--name <name>', 'the mesh\'s name', DEFAULT_MESH_NAME)
    .option('--deployer-key <file>', 'the admin\'s deployer key, created if missing (default $BEEMESH_KEY, else ~/.config/beemesh/deployer.key)')
    .option('--force', 'replace an existing root key in <dir> (everything it signed stops being valid)', false)
    .addOption(outputOption())
    .action(async (opts: { dir: string, name: string, deployerKey?: string, force: boolean, output: OutputFormat }, cmd: Command) => {
      const deployerKeyPath = opts.deployerKey ?? cmd.optsWithGlobals<{ key?: string }>().key
      await (await import('./commands/trust.js')).init({ dir: opts.dir, name: opts.name, deployerKeyPath, force: opts.force, output: opts.output })
    })

  const cert = program.command('cert').description('TLS certificates for node APIs, signed by the mesh CA')
  cert.command('issue')
    .description('issue a node\'s API serving certificate (ECDSA P-256) with the mesh CA; writes <out>.crt and <out>.key')
    .option('--ca-dir <dir>', 'the mesh\'s trust directory holding ca.crt and ca.key (`beemesh init`)', DEFAULT_TRUST_DIR)
    .requiredOption('--host <name|ip>', 'a host name or IP address clients reach the API by (repeatable)', collect, [])
    .option('--ttl <duration>', 'how long the certificate is valid', DEFAULT_CERT_TTL)
    .requiredOption('--out <prefix>', 'write <prefix>.crt and <prefix>.key')
    .action(async (opts: { caDir: string, host: string[], ttl: string, out: string }) => { await (await import('./commands/trust.js')).certIssue(opts) })

  const credential = program.command('credential').description('membership credentials signed by the mesh root')
  credential.command('issue')
    .description('sign a node\'s membership credential with the root key; prints the JSON (or writes --out)')
    .requiredOption('--root <root.key>', 'the mesh\'s root key file (from `beemesh init`)')
    .option('--node <peer id>', 'a member node\'s peer id (`beemesh node id` on the node)')
    .option('--deployer <key id>', 'or: a deployer\'s key id (`beemesh identity`), vouched for as an API caller (its tokens carry it: `beemesh token --credential`)')
    .option('--label <key=value>', 'node label the policy can match (repeatable)', parseLabel, {})
    .option('--ttl <duration>', `lifetime: 30d, 12h, 90m, 3600s (default ${DEFAULT_CREDENTIAL_TTL} for a node, 30d for a deployer)`)
    .option('--out <file>', 'write it to this file instead of printing it')
    .action(async (opts: { root: string, node?: string, deployer?: string, label: Record<string, string>, ttl?: string, out?: string }) => { await (await import('./commands/trust.js')).credentialIssue(opts) })

  node.command('id')
    .description('print this node\'s peer id, creating its identity key if needed')
    .option('--data-dir <dir>', 'where the identity key lives', DEFAULT_DATA_DIR)
    .action(async (opts: { dataDir: string }) => { await (await import('./commands/trust.js')).nodeId(opts) })

  program.command('token')
    .description('print a bearer token for the control API, signed by the deployer key (only the token goes to stdout)')
    .option('--key <file>', 'deployer key file (default $BEEMESH_KEY, else ~/.config/beemesh/deployer.key)')
    .option('--ttl <duration>', 'lifetime, at most 30d: 30d, 12h, 90m, 3600s', DEFAULT_TOKEN_TTL)
    .option('--credential <file>', 'a deployer credential the root issued for this key (`beemesh credential issue --deployer`), carried in the token')
    .action(async (_opts: unknown, cmd: Command) => { await (await import('./commands/trust.js')).token(cmd.optsWithGlobals<{ key?: string, ttl: string, mesh?: string, api?: string, credential?: string }>()) })

  const policy = program.command('policy').description('root-signed policies: who may deploy, host, publish and send')
  policy.command('sign <file>')
    .description('check a policy (errors name line and column) and sign it with the root key; prints the SignedPolicy JSON')
    .requiredOption('--root <root.key>', 'the mesh\'s root key file')
    .option('--out <file>', 'write it to this file instead of printing it')
    .action(async (file: string, opts: { root: string, out?: string }) => { await (await import('./commands/trust.js')).policySign(file, opts) })
  policy.command('apply <file>')
    .description('put a policy in force on the mesh through the node (--api): a SignedPolicy as is, or a policy signed with --root')
    .option('--root <root.key>', 'sign <file> with this root key first (needed unless <file> is a SignedPolicy)')
    .action(async (file: string, opts: { root?: string }, cmd: Command) => {
      await (await import('./commands/trust.js')).policyApply(file, { root: opts.root, api: resolveApiUrl(cmd.optsWithGlobals<{ api?: string }>().api) })
    })
  policy.command('get')
    .description('show the policy in force on the node: name, version, signer and text')
    .addOption(outputOption())
    .action(async (_opts: unknown, cmd: Command) => {
      const all = cmd.optsWithGlobals<{ api?: string, output: OutputFormat }>()
      await (await import('./commands/trust.js')).policyGet({ api: resolveApiUrl(all.api), output: all.output })
    })

  return program
}

/** Runs the CLI; every failure is one `beemesh: error: …` line and a non-zero exit code. */
export async function main (argv: string[] = process.argv): Promise<void> {
  // A reader that goes away (`beemesh state x | head -3`) ends the output, as with any Unix tool: no stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0); else throw err })
  try {
    await buildProgram().parseAsync(argv)
  } catch (err) {
    process.stderr.write(`beemesh: error: ${describeError(err)}\n`)
    process.exitCode = err instanceof BeeMeshError ? err.exitCode : 1
  }
}
