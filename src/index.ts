/**
 * The `beemesh` package: what workload modules import.
 *
 *   import { defineWorkload } from 'beemesh'
 *   export default defineWorkload({ name: 'orders', kind: 'stateless', topics: ['orders'], handler: async (event, ctx) => { … } })
 *   export default defineWorkload({ name: 'door', kind: 'stateful', machine: setup({...}).createMachine({...}) })
 *   export default defineWorkload({ name: 'web', kind: 'container', image: 'busybox', command: ['httpd', '-f'], replicas: 2 })
 */
export { defineWorkload } from './workloads/define.js'
export type {
  ContainerDefinition, ContainerFields, ContainerPort, EnvVar, ImagePullPolicy, RestartBackoff, RestartPolicy,
  Delivery, Durability, HandlerContext, MachineLogic, ResourceQuantities, StatefulDefinition, StatelessDefinition, StatelessHandler, TopicEvent, WorkloadDefinition, WorkloadIdentity
} from './workloads/types.js'
export { deadLetterTopic } from './workloads/types.js'
