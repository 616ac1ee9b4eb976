#!/usr/bin/env -S node --no-short-builtin-calls --single-threaded --bytecode-old-age=1 --flush-baseline-code
// The CLI, bundled by `npm run build` (scripts/build.mjs) into dist/bin/.
// The #! line's flags are a node's V8 flags (src/node/process-flags.ts).
import '../dist/bin/beemesh.mjs'
