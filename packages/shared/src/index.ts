export * from './errors.js';
export * from './constants.js';
export * from './names.js';
export * from './encoding.js';
export * from './chain.js';
export * from './scanner.js';
export * from './block.js';
export * from './verifier.js';
export * from './canonical-json.js';
export * from './strict-json.js';
export * from './render.js';
export * from './manifest.js';
export * from './bundle.js';
// OpenPGP (openpgp.js) is a separate entry point, @appendlog/shared/signatures,
// so the ingest path never loads it.
export * from './frames.js';
export * from './claims.js';
export * from './evidence.js';
export * from './quorum.js';
export * from './buildlog.js';
export * from './version.js';
export * from './archive.js';
