import { readlinkSync, rmSync } from 'node:fs';
import { afterAll, afterEach } from 'vitest';
import { madeHomes, stopAll } from './helpers.js';
import { enterOwnNamespaces, ipcObjects, killAll, privateNamespaces, processesOf, removeObjects, sweepHomes } from './sweep.js';

// In a run with namespaces of its own (scripts/test.sh), each test file has
// its own inside it, so files run side by side (vitest.config.ts); the
// file's namespace starts empty, and must end empty.
if (privateNamespaces()) enterOwnNamespaces();

afterEach(stopAll);

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
