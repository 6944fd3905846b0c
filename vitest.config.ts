import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end tests spawn real processes; two cores, so keep it modest.
    maxWorkers: 2,
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest/results.json' },
  },
});
