// A replicated chaos counter (see counter-machine.ts); chaos/run.ts applies three of them.
import { defineWorkload } from 'beemesh'
import { counterMachine } from './counter-machine.js'

export default defineWorkload({ name: 'chaos-counter-c', kind: 'stateful', machine: counterMachine, durability: 'replicated', snapshotEvery: 100 })
