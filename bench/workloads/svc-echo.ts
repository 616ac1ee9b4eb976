// The service of the services bench: one replica on the node labelled role=server,
// replying with what it got (nothing else, so the call path is what is measured).
import { defineWorkload } from 'beemesh'

export default defineWorkload({
  name: 'svc-echo',
  kind: 'stateless',
  replicas: 1,
  nodeSelector: { role: 'server' },
  resources: { cpu: '10m', memory: '32Mi' },
  services: [{ name: 'svc-echo' }],
  onCall: request => ({ echo: request.data })
})
