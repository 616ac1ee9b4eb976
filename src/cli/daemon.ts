/**
 * The entry of dist/bin/daemon.cjs: the whole CLI as one CommonJS file, which
 * `beemesh node start` runs through V8's code cache (src/cli/launch.ts).
 */
import '../polyfills.js'
import { main } from './main.js'

void main()
