import { defineConfig } from 'vitest/config';

// Test files compare the kernel's IPC state before and after and pick keys
// and ports of their own. In a run with namespaces of its own
// (scripts/test.sh), each file runs in IPC and network namespaces of its own
// (test/setup-each.ts), so files run side by side: two at once, which is
// what two cores give (the tests are mostly programs starting and waiting).
// On a shared host they run one at a time.
const ownNamespaces = process.env.APPSHOT_TEST_NS === 'private';
const workers = Number(process.env.APPSHOT_TEST_WORKERS) || 2;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: ownNamespaces,
    maxWorkers: ownNamespaces ? workers : 1,
    minWorkers: 1,
    // Headroom for two files side by side on a loaded machine; a command
    // that hangs still fails at its own limit (helpers.ts: 50 s).
    testTimeout: 120_000,
    hookTimeout: 120_000,
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup-each.ts'],
  },
});
