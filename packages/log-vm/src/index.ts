/** Library entry of the log VM package: what the CLI commands are built from. */
export { Store, type LogRow, type HeadRow, type LogSummary } from './store.js';
export { appendSession, type AppendOptions, type Receipt, type SessionResult } from './ingest.js';
export { sealLog, type SealResult } from './seal.js';
export { exportBundle, verifyBundle, verifyBundleEntries, checkSealLink, openBundle } from './bundle-io.js';
export { verifyStoredChain, verifyStoredLog, verifySealChain } from './verify-store.js';
export { parseSignerSpec, type Signer } from './signers.js';
export { defaultDbPath } from './paths.js';
