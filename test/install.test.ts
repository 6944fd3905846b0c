import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, run } from './helpers.js';

// README: after `npm ci`, `npx logvm ...` and `npx logsend ...` work from the root.
describe('when npm ci has installed the workspace', () => {
  it.each([
    ['logvm', 'append'],
    ['logsend', '--on-log-failure'],
  ])('node_modules/.bin/%s runs and prints its help', async (bin, mentions) => {
    const r = await run(join(ROOT, 'node_modules/.bin', bin), ['--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString('utf8')).toContain(mentions);
  });
});
