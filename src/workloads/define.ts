/**
 * What a user module imports as `beemesh`: `defineWorkload` and the types
 * of a definition. Every workload bundle holds this module, so it imports
 * only the validation of definitions (schema.ts): manifests, YAML and the
 * Kubernetes parser live in manifest.ts and kube.ts, which no workload needs.
 */
import { validateDefinition } from './schema.js'
import type { ContainerDefinition, StatefulDefinition, StatelessDefinition, WorkloadDefinition } from './types.js'

// Workload bundles resolve `beemesh` to this module, so it offers what the
// package entry (src/index.ts) offers to user code.
export { deadLetterTopic } from './types.js'
export { isMachine } from './machine.js'
export type { CallHandler, CallOptions, CallRequest, ContainerDefinition, ContainerPort, FetchResponse, ServiceDeclaration, Delivery, Durability, EnvVar, HandlerContext, ImagePullPolicy, MachineLogic, ResourceQuantities, RestartBackoff, RestartPolicy, StatefulDefinition, StatelessDefinition, StatelessHandler, TopicEvent, WorkloadDefinition, WorkloadIdentity } from './types.js'

/**
 * Declares a workload: `export default defineWorkload({ ... })`, stateless
 * (`handler` woken by `topics`), stateful (an XState `machine`) or a
 * container (an `image` run like a one-container Kubernetes pod). Returns the
 * definition unchanged, typed, after validating it (so a module with a bad
 * definition fails when it loads, with the field named).
 */
export function defineWorkload<T = any> (def: StatelessDefinition<T>): StatelessDefinition<T>
export function defineWorkload<D extends StatefulDefinition> (def: D): D
export function defineWorkload (def: ContainerDefinition): ContainerDefinition
export function defineWorkload (def: WorkloadDefinition): WorkloadDefinition {
  validateDefinition(def, 'defineWorkload')
  return def
}
