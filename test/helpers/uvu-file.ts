// Runs one uvu spec file (argv[2]) the way the uvu CLI does; used by test/run.ts.
import { relative } from 'node:path'
import { run } from 'uvu/run'

const file = process.argv[2]
if (file == null) throw new Error('usage: uvu-file.ts <spec file>')
await run([{ name: relative(process.cwd(), file), file }], { bail: false })
