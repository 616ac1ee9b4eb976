/**
 * The discovery documents kubectl reads before anything else: /version, /api,
 * /api/v1, /apis and /apis/<group>/<version>. Only the resources BeeMesh
 * serves are listed, with the verbs it implements, so kubectl neither offers
 * nor tries the rest.
 */
import { VERSION } from '../../version.js'

export interface ApiResource {
  name: string
  singularName: string
  namespaced: boolean
  kind: string
  verbs: string[]
  shortNames?: string[]
  categories?: string[]
  group?: string
  version?: string
}

export interface GroupVersion {
  group: string
  version: string
  resources: ApiResource[]
}

const READ = ['get', 'list', 'watch']

/** Every group/version served: the core group is `''`. */
export const GROUP_VERSIONS: readonly GroupVersion[] = [
  {
    group: '',
    version: 'v1',
    resources: [
      { name: 'nodes', singularName: 'node', namespaced: false, kind: 'Node', verbs: READ, shortNames: ['no'] },
      { name: 'namespaces', singularName: 'namespace', namespaced: false, kind: 'Namespace', verbs: READ, shortNames: ['ns'] },
      { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: [...READ, 'create', 'delete', 'patch', 'update'], shortNames: ['po'], categories: ['all'] },
      { name: 'events', singularName: 'event', namespaced: true, kind: 'Event', verbs: ['get', 'list'], shortNames: ['ev'] },
      { name: 'services', singularName: 'service', namespaced: true, kind: 'Service', verbs: [...READ, 'create', 'delete', 'patch', 'update'], shortNames: ['svc'], categories: ['all'] },
      { name: 'endpoints', singularName: 'endpoints', namespaced: true, kind: 'Endpoints', verbs: READ, shortNames: ['ep'] },
      { name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] }
    ]
  },
  {
    group: 'apps',
    version: 'v1',
    resources: [
      { name: 'deployments', singularName: 'deployment', namespaced: true, kind: 'Deployment', verbs: [...READ, 'create', 'delete', 'patch', 'update'], shortNames: ['deploy'], categories: ['all'] },
      { name: 'deployments/scale', singularName: '', namespaced: true, kind: 'Scale', group: 'autoscaling', version: 'v1', verbs: ['get', 'patch', 'update'] }
    ]
  },
  {
    group: 'discovery.k8s.io',
    version: 'v1',
    resources: [
      { name: 'endpointslices', singularName: 'endpointslice', namespaced: true, kind: 'EndpointSlice', verbs: READ }
    ]
  },
  {
    group: 'beemesh.io',
    version: 'v1',
    resources: [
      { name: 'actors', singularName: 'actor', namespaced: true, kind: 'Actor', verbs: [...READ, 'create', 'delete'], categories: ['beemesh'] },
      { name: 'machines', singularName: 'machine', namespaced: true, kind: 'Machine', verbs: [...READ, 'create', 'delete'], shortNames: ['mach'], categories: ['beemesh'] }
    ]
  }
]

export function findGroupVersion (group: string, version: string): GroupVersion | undefined {
  return GROUP_VERSIONS.find(gv => gv.group === group && gv.version === version)
}

export function findResource (group: string, version: string, name: string): ApiResource | undefined {
  return findGroupVersion(group, version)?.resources.find(r => r.name === name)
}

/** `GET /version`: kubectl shows it as the server version. */
export function versionInfo (): Record<string, string> {
  return {
    major: '1',
    minor: '32',
    gitVersion: `v1.32.0-beemesh.${VERSION}`,
    gitCommit: '',
    gitTreeState: 'clean',
    buildDate: '1970-01-01T00:00:00Z',
    goVersion: `node${process.versions.node}`,
    compiler: 'beemesh',
    platform: `${process.platform}/${process.arch}`
  }
}

/** `GET /api`: the core group's versions. */
export function coreVersions (serverAddress: string): Record<string, unknown> {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] }
}

/** `GET /apis`: the named groups (everything but the core group). */
export function groupList (): Record<string, unknown> {
  const groups = new Map<string, string[]>()
  for (const gv of GROUP_VERSIONS) if (gv.group !== '') groups.set(gv.group, [...groups.get(gv.group) ?? [], gv.version])
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [...groups].map(([name, versions]) => ({
      name,
      versions: versions.map(v => ({ groupVersion: `${name}/${v}`, version: v })),
      preferredVersion: { groupVersion: `${name}/${versions[0]!}`, version: versions[0]! }
    }))
  }
}

/** `GET /api/v1` or `/apis/<group>/<version>`. */
export function resourceList (gv: GroupVersion): Record<string, unknown> {
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: gv.group === '' ? gv.version : `${gv.group}/${gv.version}`,
    resources: gv.resources.map(r => ({ ...r, storageVersionHash: '' }))
  }
}

/** `GET /apis/<group>`: one group. */
export function apiGroup (group: string): Record<string, unknown> | undefined {
  const versions = GROUP_VERSIONS.filter(gv => gv.group === group && group !== '').map(gv => gv.version)
  if (versions.length === 0) return undefined
  return {
    kind: 'APIGroup',
    apiVersion: 'v1',
    name: group,
    versions: versions.map(v => ({ groupVersion: `${group}/${v}`, version: v })),
    preferredVersion: { groupVersion: `${group}/${versions[0]!}`, version: versions[0]! }
  }
}
