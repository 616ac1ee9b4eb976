// A no-op stateless actor: measures dispatch, not user code.
import { defineWorkload } from 'beemesh'

export default defineWorkload({
  name: 'sink',
  kind: 'stateless',
  topics: ['bench'],
  replicas: 1,
  resources: { cpu: '10m', memory: '32Mi' },
  handler: () => {}
})
