import { readlinkSync, rmSync } from 'node:fs';
import { afterAll, afterEach, beforeEach, expect } from 'vitest';
import { madeHomes, stopAll } from './helpers.js';
import { enterOwnNamespaces, ipcObjects, killAll, privateNamespaces, processesOf, removeObjects, sweepHomes } from './sweep.js';

// In a run with namespaces of its own (scripts/test.sh), each test file has
// its own inside it, so files run side by side (vitest.config.ts); the
// file's namespace starts empty, and must end empty.
if (privateNamespaces()) enterOwnNamespaces();

afterEach(stopAll);
// A turn of the worker's event loop between tests: tests that each run commands in a row without one would otherwise
// add up to one long hold (below).
beforeEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

/** The file's sweep, after its own hooks: ends what its tests left running,
 * lets appshot gc remove what they held, then, in the file's own IPC
 * namespace, any object left is a leak: removed, and the file fails. */
afterAll(async () => {
  const ownIpcNs = privateNamespaces() ? readlinkSync('/proc/self/ns/ipc') : undefined;
  killAll(processesOf(madeHomes, ownIpcNs));
  await sweepHomes(madeHomes);
  for (const home of madeHomes) {
    try {
      rmSync(home, { recursive: true, force: true });
    } catch {
      // A file a test gave away; global teardown tries again.
    }
  }
  if (!ownIpcNs) return; // on a shared host, global teardown looks once for the whole run
  const left = [...ipcObjects()];
  if (!left.length) return;
  removeObjects(left);
  throw new Error(`this test file leaked SysV IPC objects: ${left.join(', ')} (removed now)`);
}, 120_000);

/** A worker that runs no event loop for 60 s misses its runner's answer, and vitest fails the whole run though every
 * test passed ("Timeout calling onTaskUpdate"): a test that holds it half that long is named, so that its long
 * commands move to appshotLater / runLater (helpers.ts) before a slower machine crosses the line. */
const HELD_WARN_MS = 30_000;
let lastTick = Date.now();
let lastTest = '';
setInterval(() => {
  const now = Date.now();
  if (now - lastTick > HELD_WARN_MS) process.stderr.write(`appshot tests: the worker was held ${((now - lastTick) / 1000).toFixed(0)} s without a turn of its event loop, from within "${lastTest}": run its long commands with appshotLater or runLater\n`);
  lastTick = now;
  lastTest = expect.getState().currentTestName ?? lastTest;
}, 1000).unref();
