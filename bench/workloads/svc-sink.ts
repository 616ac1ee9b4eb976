// The container service of the services bench's tunnel figure: `svc-sink` on port 9000.
// It is never started as a container: bench/svc-tunnel-peer.ts hands its spec to two
// service proxies, and the callee's proxy connects to the bench's TCP sink in its place.
import { defineWorkload } from 'beemesh'

export default defineWorkload({
  name: 'svc-sink',
  kind: 'container',
  image: 'busybox',
  ports: [9000],
  services: [{ name: 'svc-sink', port: 9000 }]
})
