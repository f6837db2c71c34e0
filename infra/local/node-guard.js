// node-guard.js CLI.js [ARGS...]: runs an emulator's command-line entry point, keeping the
// server alive when a client aborts a request in the middle of its body.
//
// kinesalite 3.3.3 and dynalite 4.0.0 both do `req.on('error', err => { throw err })`, so a
// client that is killed (or cancels a request) while sending turns ECONNRESET ("aborted")
// into an uncaught exception that ends the whole emulator — and every test after it fails.
// Real AWS endpoints shrug such clients off; so does this guard. Any other uncaught error
// still ends the process.
'use strict'
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error(`${new Date().toISOString()} client aborted a request: ${err.message}`)
    return
  }
  console.error(err)
  process.exit(1)
})
const cli = process.argv[2]
// The entry point reads its flags from process.argv.slice(2): drop this script's own slot.
process.argv.splice(1, 1)
require(cli)
