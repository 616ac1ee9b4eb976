/**
 * Manifests `beemesh apply` takes, in YAML or JSON: a `beemesh.io/v1 Actor`
 * naming a workload module (parseManifest), or, with parseAnyManifest, also a
 * Kubernetes Pod or Deployment (through kube.ts). Every failure is an
 * InvalidManifestError whose message is one line: `<source>: <field path>: <problem>`.
 */
import { dirname, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import * as z from 'zod/mini'
import { InvalidManifestError } from './errors.js'
import { KUBE_KINDS, parseKubeManifest } from './kube.js'
import { atPath, describeIssues, expected, label, optionalPlacementFields, sharedShape, type DefinitionOverrides } from './schema.js'
import type { ContainerDefinition } from './types.js'

/** What parseAnyManifest finds in a manifest file: an Actor (naming a module) or a container workload (a Kubernetes Pod or Deployment). */
export type AnyManifest =
  | { type: 'actor', manifest: Manifest }
  | { type: 'container', definition: ContainerDefinition }

/** A parsed `apiVersion: beemesh.io/v1, kind: Actor` manifest. */
export interface Manifest {
  /** Absolute path of the workload module (spec.module, resolved against the manifest's directory). */
  module: string
  overrides: DefinitionOverrides
}

export const MANIFEST_API_VERSION = 'beemesh.io/v1'
export const MANIFEST_KIND = 'Actor'

function manifestSchema () {
  const shared = sharedShape()
  const moduleError = expected('the path of the workload module, relative to the manifest')
  return z.strictObject({
    apiVersion: z.literal(MANIFEST_API_VERSION, { error: expected(`"${MANIFEST_API_VERSION}"`) }),
    kind: z.literal(MANIFEST_KIND, { error: expected(`"${MANIFEST_KIND}"`) }),
    metadata: z.optional(z.strictObject({
      name: z.optional(label()),
      namespace: z.optional(label())
    }, { error: expected('an object with name and/or namespace') })),
    spec: z.strictObject({
      module: z.string({ error: moduleError }).check(z.minLength(1, { error: moduleError })),
      ...optionalPlacementFields(shared),
      durability: z.optional(shared.durability),
      snapshotEvery: z.optional(shared.snapshotEvery)
    }, { error: expected('an object with module and optional overrides') })
  }, { error: expected('a mapping with apiVersion, kind, metadata and spec') })
}

/** First line of a yaml parse error, without its trailing position. */
function yamlReason (code: string, message: string, onePerFile: string): string {
  if (code === 'MULTIPLE_DOCS') return `the file holds more than one YAML document; ${onePerFile}`
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '')
}

/**
 * The value of a YAML (or JSON) text holding one
 * document (`null` when it is empty); InvalidManifestError naming the line
 * otherwise. `onePerFile` ends the message for a file of several documents.
 */
function readYaml (text: string, source: string, onePerFile = 'put one Actor per file'): unknown {
  const doc = parseDocument(text, { prettyErrors: true })
  const syntax = doc.errors[0]
  if (syntax != null) {
    const pos = syntax.linePos?.[0]
    const where = pos != null ? ` at line ${pos.line}, column ${pos.col}` : ''
    throw new InvalidManifestError(source, `invalid YAML${where}: ${yamlReason(syntax.code, syntax.message, onePerFile)}`)
  }
  try {
    return doc.toJS()
  } catch (err) {
    throw new InvalidManifestError(source, `invalid YAML: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/** Validates the parsed value of an Actor manifest (the Kubernetes API's Actor resource uses it too); see parseManifest. */
export function actorManifest (value: unknown, source: string): Manifest {
  const result = manifestSchema().safeParse(value)
  if (!result.success) throw new InvalidManifestError(source, describeIssues(result.error.issues))
  const { metadata, spec } = result.data
  const { module, ...specOverrides } = spec
  const overrides: DefinitionOverrides = {}
  if (metadata?.name != null) overrides.name = metadata.name
  if (metadata?.namespace != null) overrides.namespace = metadata.namespace
  for (const [key, v] of Object.entries(specOverrides)) {
    if (v !== undefined) (overrides as Record<string, unknown>)[key] = v
  }
  return { module: resolve(dirname(source), module), overrides }
}

/**
 * Parses a YAML (or JSON) `apiVersion: beemesh.io/v1, kind: Actor` manifest.
 * `source` is the manifest's path: errors name it, and `spec.module` is
 * resolved against its directory. Throws InvalidManifestError. (parseAnyManifest
 * also takes Kubernetes Pods and Deployments.)
 */
export function parseManifest (text: string, source: string): Manifest {
  const value = readYaml(text, source)
  if (value == null) throw new InvalidManifestError(source, `the manifest is empty; expected apiVersion: ${MANIFEST_API_VERSION}, kind: ${MANIFEST_KIND}, metadata and spec`)
  return actorManifest(value, source)
}

const ANY_KIND_EXPECTED = '"Actor", "Pod" or "Deployment"'

/**
 * Parses any manifest `beemesh apply` takes (YAML or JSON, one document): a
 * `beemesh.io/v1 Actor` (as parseManifest), or a Kubernetes `v1 Pod` or
 * `apps/v1 Deployment`, which becomes a container definition (see kube.ts).
 * Throws InvalidManifestError `<source>: <field path>: <problem>`.
 */
export function parseAnyManifest (text: string, source: string): AnyManifest {
  const value = readYaml(text, source, 'put one Actor, Pod or Deployment per file')
  if (value == null) throw new InvalidManifestError(source, `the manifest is empty; expected an Actor (apiVersion: ${MANIFEST_API_VERSION}), a Pod (v1) or a Deployment (apps/v1)`)
  const { apiVersion, kind } = typeof value === 'object' && !Array.isArray(value) ? value as { apiVersion?: unknown, kind?: unknown } : {}
  if ((KUBE_KINDS as readonly unknown[]).includes(kind)) return { type: 'container', definition: parseKubeManifest(value, source) }
  if (kind === MANIFEST_KIND || apiVersion === MANIFEST_API_VERSION || typeof value !== 'object' || Array.isArray(value)) {
    return { type: 'actor', manifest: actorManifest(value, source) }
  }
  throw new InvalidManifestError(source, atPath(['kind'], expected(ANY_KIND_EXPECTED)({ input: kind })))
}
