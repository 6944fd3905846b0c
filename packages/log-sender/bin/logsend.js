#!/usr/bin/env node
// The logsend command; the code is built into ../dist (tsc).
//
// Runtime floor first, in syntax every Node since 12 parses (no static
// import, no ?., no top-level await): on an older Node the real code would
// die with a SyntaxError, and a build would run without its log.
var FLOOR = [20, 19];
var v = process.versions.node.split('.').map(Number);
if (v[0] < FLOOR[0] || (v[0] === FLOOR[0] && v[1] < FLOOR[1])) {
  process.stderr.write('logsend: NODE_TOO_OLD: appendlog needs Node.js >= ' + FLOOR.join('.') + '; this is ' + process.versions.node + '\n');
  process.exitCode = 78; // NODE_TOO_OLD, README "Exit codes"
} else {
  import('../dist/cli.js');
}
