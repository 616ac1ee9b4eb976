/**
 * A container workload declared in TypeScript: the same one-shot container
 * as hello-pod.yaml, with the fields a module may set. Nothing of this module
 * runs on the mesh; the definition is read once and the image runs as
 * a one-container pod would.
 *
 *   beemesh apply examples/containers/hello.ts
 *   beemesh logs hello-ts
 */
import { defineWorkload } from 'beemesh'

export default defineWorkload({
  name: 'hello-ts',
  kind: 'container',
  image: 'busybox',
  command: ['sh', '-c'],
  args: ['echo "hello from beemesh, $GREETER"; echo to stderr >&2'],
  env: { GREETER: 'hello.ts' },
  restartPolicy: 'Never',
  // Requests (what the scheduler reserves) default to these limits.
  limits: { cpu: '100m', memory: '32Mi' }
})
