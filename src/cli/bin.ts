/**
 * The bundled CLI's entry (dist/bin/beemesh.mjs, run by bin/beemesh.js).
 * The polyfills are evaluated before any chunk that holds libp2p loads.
 */
import '../polyfills.js'

const { main } = await import('./main.js')
await main()
