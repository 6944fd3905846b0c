/**
 * Test support: the known-answer vectors (docs/vectors/vectors.json, written
 * by an independent Python generator) and a helper that asserts on an error's
 * `code`, never on its message text (STYLE.md, "Not for us").
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import {
  AppendlogError,
  BlockBuilder,
  HASH_SIZE,
  decodeEntry,
  genesisHash,
  hashBackend,
  setHashBackend,
  type HashBackend,
  type LogIdentity,
} from '../src/index.js';

export interface GenesisVector {
  comment: string;
  vm: string;
  name: string;
  created: number;
  encoding_hex: string;
  hash_hex: string;
}

export interface EntryFields {
  seq: number;
  time: number;
  session: number;
  kind: number;
  flags: number;
  payload_hex: string;
}

export interface EntryVector extends EntryFields {
  comment: string;
  encoding_hex: string;
}

export interface ChainVector {
  comment: string;
  vm: string;
  name: string;
  created: number;
  entries: EntryFields[];
  hashes_hex: string[];
  head_hex: string;
}

export interface ScannerVector {
  comment: string;
  maxLine: number;
  input_hex: string;
  lines: Array<{ payload_hex: string; flags: number }>;
}

export interface Vectors {
  comment: string;
  genesis: GenesisVector[];
  entries: EntryVector[];
  chains: ChainVector[];
  scanner: ScannerVector[];
}

const VECTORS_PATH = join(dirname(fileURLToPath(import.meta.url)), '../../../docs/vectors/vectors.json');

export function loadVectors(): Vectors {
  return JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as Vectors;
}

export const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** Runs `fn`, expecting a coded AppendlogError; returns it for further checks. */
export function expectAppendlogError(fn: () => unknown, code: AppendlogError['code']): AppendlogError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected ${code} to be thrown`).toBeInstanceOf(AppendlogError);
  const err = thrown as AppendlogError;
  expect(err.code).toBe(code);
  return err;
}

/** One entry to put in a test chain; seqs are assigned by position from 1. */
export interface Item {
  time: number;
  session: number;
  kind: number;
  flags?: number;
  payload: Uint8Array | string;
}

export interface BuiltChain {
  identity: LogIdentity;
  /** Canonical encoding of each entry, seq = index + 1. */
  encodings: Buffer[];
  /** Hash of each entry, as a store row or bundle line keeps it. */
  hashes: Buffer[];
  head: Buffer;
}

/** Builds a chain the way the log VM does: BlockBuilder.finish onto the genesis hash. */
export function buildChain(identity: LogIdentity, items: readonly Item[]): BuiltChain {
  const builder = new BlockBuilder(64);
  for (const it of items) {
    const payload = typeof it.payload === 'string' ? Buffer.from(it.payload, 'utf8') : it.payload;
    builder.add(it.time, it.session, it.kind, it.flags ?? 0, payload);
  }
  const block = builder.finish(1, genesisHash(identity));
  const encodings: Buffer[] = [];
  const hashes: Buffer[] = [];
  let off = 0;
  for (let i = 0; i < block.count; i++) {
    const { next } = decodeEntry(block.data, off);
    encodings.push(Buffer.from(block.data.subarray(off, next)));
    hashes.push(Buffer.from(block.hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE)));
    off = next;
  }
  return { identity, encodings, hashes, head: Buffer.from(block.head) };
}

/**
 * Both chain-hashing backends: the OpenSSL batch addon (when built) and
 * node:crypto. Each must give the same bytes; `available` says whether this
 * machine can select it.
 */
export const BACKENDS: ReadonlyArray<{ backend: HashBackend; available: boolean }> = (() => {
  const before = hashBackend();
  const nativeBuilt = setHashBackend('openssl-batch') === 'openssl-batch';
  setHashBackend(before);
  return [
    { backend: 'openssl-batch', available: nativeBuilt },
    { backend: 'node-crypto', available: true },
  ];
})();

/** Selects `backend` for the tests of the enclosing describe; restores the previous one after. */
export function useBackend(backend: HashBackend, hooks: { beforeAll: (fn: () => void) => void; afterAll: (fn: () => void) => void }): void {
  let before: HashBackend;
  hooks.beforeAll(() => {
    before = hashBackend();
    expect(setHashBackend(backend)).toBe(backend);
  });
  hooks.afterAll(() => {
    setHashBackend(before);
  });
}

/** Splits `input` at the given (unsorted, possibly repeated) positions. */
export function split(input: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let prev = 0;
  for (const c of at) {
    parts.push(input.subarray(prev, c));
    prev = c;
  }
  parts.push(input.subarray(prev));
  return parts;
}
