#!/usr/bin/env node
// The polyfills must be evaluated before libp2p loads (Node 20 lacks Promise.withResolvers).
import '../dist/polyfills.js'

const { main } = await import('../dist/cli/main.js')
await main()
