import { describe, expect, it } from 'vitest';
import { hashBackend } from '../src/index.js';

describe('the batch-hashing addon', () => {
  // npm ci builds it (scripts/build-native.mjs); without it hashing falls back
  // to node:crypto, which is correct but slower, and the tests of the native
  // backend would not run. So a machine where it did not build fails here.
  it('is built and in use', () => {
    expect(hashBackend()).toBe('openssl-batch');
  });
});
