#!/usr/bin/env node
// The logsend command; the code is built into ../dist by `npm ci` (tsc).
import "../dist/cli.js";
