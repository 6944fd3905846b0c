#!/usr/bin/env node
// The logvm command; the code is built into ../dist (tsc).
//
// Runtime floor first, in syntax every Node since 12 parses (no static
// import, no ?., no top-level await): on an older Node the real code would
// die with a SyntaxError before it could say anything, and the qrexec
// service would leave the build VM with no answer at all.
var FLOOR = [20, 19];
var v = process.versions.node.split('.').map(Number);
if (v[0] < FLOOR[0] || (v[0] === FLOOR[0] && v[1] < FLOOR[1])) {
  var msg = 'appendlog needs Node.js >= ' + FLOOR.join('.') + '; this is ' + process.versions.node;
  // As the qrexec service (`logvm append`), stdout goes back to the caller:
  // answer with the service's coded error line, as for any other refusal.
  if (process.argv[2] === 'append') {
    process.stdout.write(JSON.stringify({ type: 'error', code: 'NODE_TOO_OLD', message: msg }) + '\n');
  }
  process.stderr.write('logvm: NODE_TOO_OLD: ' + msg + '\n');
  process.exitCode = 78; // NODE_TOO_OLD, README "Exit codes"
} else {
  import('../dist/cli.js');
}
