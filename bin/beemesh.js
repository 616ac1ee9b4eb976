#!/usr/bin/env node
// The CLI, bundled by `npm run build` (scripts/build.mjs) into dist/bin/.
import '../dist/bin/beemesh.mjs'
