/**
 * The bundled CLI's entry (dist/bin/beemesh.mjs, run by bin/beemesh.js).
 * `node start` runs from the single-file bundle through V8's code cache
 * (./launch.ts); every other command loads only its own chunks. The
 * polyfills are evaluated before any chunk that holds libp2p loads.
 */
import '../polyfills.js'
import { isDaemonCommand, launchDaemon } from './launch.js'

if (isDaemonCommand(process.argv)) {
  launchDaemon()
} else {
  const { main } = await import('./main.js')
  await main()
}
