import { spawnSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SEMTOOL, kernelSems, makeHome, testRoot } from './helpers.js';

/** A process in the host's namespaces: npm, which started scripts/test.sh. */
const hostPid = () => process.env.APPSHOT_TEST_HOST_PID;
const hostNs = (kind: string) => readlinkSync(`/proc/${hostPid()}/ns/${kind}`);
const ownNs = (kind: string) => readlinkSync(`/proc/self/ns/${kind}`);
const canUnshare = () => spawnSync('unshare', ['--ipc', '--net', 'true']).status === 0 || spawnSync('unshare', ['--user', '--map-root-user', '--ipc', '--net', 'true']).status === 0;

describe('the suite on a shared host', () => {
  it('runs in IPC and network namespaces of its own wherever the kernel allows them', () => {
    if (!canUnshare()) {
      expect(process.env.APPSHOT_TEST_NS).toBe('shared');
      return;
    }
    expect(process.env.APPSHOT_TEST_NS).toBe('private');
    expect(ownNs('ipc')).not.toBe(hostNs('ipc'));
    expect(ownNs('net')).not.toBe(hostNs('net'));
  });

  it("another program's SysV objects on the host are invisible to the suite", () => {
    // Entering the host's IPC namespace takes real root (not a user namespace's).
    if (process.env.APPSHOT_TEST_NS !== 'private' || ownNs('user') !== hostNs('user')) return;
    const onHost = (args: string[]) => spawnSync('nsenter', [`--ipc=/proc/${hostPid()}/ns/ipc`, SEMTOOL, ...args], { encoding: 'utf8' });
    // A program outside the run makes a set on the host, with a key of its own.
    let key = 0;
    let made;
    do {
      key = 0x5e100000 + Math.floor(Math.random() * 0xfffff);
      made = onHost(['get', '0x' + key.toString(16), '1', 'cx']);
    } while (made.stdout.includes('EEXIST'));
    const id = /id (\d+)/.exec(made.stdout)?.[1];
    expect(id, made.stdout + made.stderr).toBeDefined();
    try {
      expect(kernelSems().some((s) => s.key === key)).toBe(false);
    } finally {
      onHost(['use', id!, 'rmid']);
    }
  });

  it("this run's homes are its own: a fresh folder per run, not one every run shares", () => {
    const root = testRoot();
    expect(dirname(root)).toBe(tmpdir());
    expect(root).toMatch(/appshot-tests-\w{6}$/);
    expect(dirname(makeHome())).toBe(root);
  });
});
