import { defineConfig } from 'vitest/config';

// Tests import workspace packages from their TypeScript sources (the "@portbind/source" export
// condition), so a test run never depends on a stale dist/.
export default defineConfig({
  resolve: { conditions: ['@portbind/source'] },
  ssr: { resolve: { conditions: ['@portbind/source'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Servers under test bind real ports; files run in parallel on separate ephemeral ports.
    pool: 'forks',
    reporters: ['default', './test/support/summary-reporter.ts'],
    env: { NODE_ENV: 'test' },
  },
});
