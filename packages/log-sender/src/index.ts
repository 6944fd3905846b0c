export { send, SENDER_VERSION, type SendOptions, type SendResult } from './sender.js';
export { fileClaims, sha256File } from './files.js';
export { startTransport, serviceArgument, type TransportSpec } from './transport.js';
