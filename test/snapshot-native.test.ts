import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addon } from '../ts/addon.js';
import type { IpcType } from '../ts/sysv/ipctype.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { ADDON_PATH } from '../ts/paths.js';
import { makeHome } from './helpers.js';

const c = addon();
const AID = 'snaptest';
const KEY = 0x5c000000; // this file's keys: KEY .. KEY + 0xff

const home = makeHome();
const made: [IpcType, number][] = [];

/** A kernel object this test removes afterwards, created as a restore would. */
function create(type: IpcType, key: number, size: number, mode = 0o600): number {
  const id = c.ipcCreate(home, AID, type, key, size, mode);
  made.push([type, id]);
  c.inflightClear(home);
  return id;
}

afterEach(() => {
  for (const [type, id] of made.splice(0)) {
    try {
      c.ipcRemove(type, id);
    } catch {
      /* the test removed it */
    }
  }
});

/** CRC-32C one bit at a time: the definition the fast paths must match. */
function crcRef(buf: Uint8Array, crc = 0): number {
  crc = ~crc >>> 0;
  for (const b of buf) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

/** What fn throws, for its code and message. */
function thrown(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (e) {
    return e as NodeJS.ErrnoException;
  }
  throw new Error('did not throw');
}

const MiB = 1 << 20;

describe('crc32c', () => {
  it('gives the check value and continues over a second buffer', () => {
    expect(c.crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(c.crc32c(Buffer.alloc(0))).toBe(0);
    const data = randomBytes(100_003);
    const whole = c.crc32c(data);
    for (const cut of [0, 1, 7, 8, 4097, 100_003]) expect(c.crc32c(data.subarray(cut), c.crc32c(data.subarray(0, cut)))).toBe(whole);
  });

  it('matches the bitwise definition at every alignment and length', () => {
    const data = randomBytes(64);
    for (let start = 0; start < 9; start++)
      for (let end = start; end <= 64; end += 5) expect(c.crc32c(data.subarray(start, end), 0x1234)).toBe(crcRef(data.subarray(start, end), 0x1234));
  });

  it('matches it around the three-block path (3 x 8 KiB side by side, then joined)', () => {
    const data = randomBytes(4 * 24576 + 16);
    for (const len of [24575, 24576, 24577, 2 * 24576 + 8191, 4 * 24576 + 9])
      for (let start = 0; start < 4; start++) expect(c.crc32c(data.subarray(start, start + len), 0xfeed)).toBe(crcRef(data.subarray(start, start + len), 0xfeed));
  });
});

describe('shared memory to and from files', () => {
  const file = (name: string) => join(home, name);
  /** Runs fn with fd open on path (flags as openSync's). */
  const withFd = <T>(path: string, flags: string, fn: (fd: number) => T): T => {
    const fd = openSync(path, flags);
    try {
      return fn(fd);
    } finally {
      closeSync(fd);
    }
  };

  it('round-trips a segment larger than a chunk, whole and a range in the middle', () => {
    const size = 9 * MiB + 4097;
    const shmid = create('shm', 0, size);
    const data = randomBytes(size);
    writeFileSync(file('in'), data);
    try {
      expect(withFd(file('in'), 'r', (fd) => c.fdToShm(fd, shmid, 0, size, 0))).toBe(c.crc32c(data));
      expect(withFd(file('out'), 'w', (fd) => c.shmToFd(fd, shmid, 0, size, 0))).toBe(c.crc32c(data));
      expect(readFileSync(file('out')).equals(data)).toBe(true);

      // A range in the middle, continuing a crc, from the file's current position.
      const offset = MiB + 7;
      const len = 2 * MiB + 3;
      const middle = randomBytes(len);
      writeFileSync(file('in'), Buffer.concat([Buffer.from('skip'), middle]));
      withFd(file('in'), 'r', (fd) => {
        expect(readSync(fd, Buffer.alloc(4))).toBe(4); // the position is now 4
        expect(c.fdToShm(fd, shmid, offset, len, 0xabcd)).toBe(c.crc32c(middle, 0xabcd));
      });
      middle.copy(data, offset);
      expect(withFd(file('out'), 'w', (fd) => c.shmToFd(fd, shmid, offset, len, 0xabcd))).toBe(c.crc32c(middle, 0xabcd));
      expect(readFileSync(file('out')).equals(middle)).toBe(true);
      expect(withFd(file('out'), 'w', (fd) => c.shmToFd(fd, shmid, 0, size))).toBe(c.crc32c(data));
      expect(readFileSync(file('out')).equals(data)).toBe(true);
    } finally {
      rmSync(file('in'), { force: true });
      rmSync(file('out'), { force: true });
    }
  });

  it('a segment of 64 MiB or more, copied by several threads: the same bytes and crc, from and to the file position', () => {
    const size = 64 * MiB + 12_345; // not a page multiple: the last part is short
    const shmid = create('shm', 0, size);
    const data = randomBytes(size);
    const head = Buffer.from('head');
    const tail = Buffer.from('tail');
    writeFileSync(file('in'), Buffer.concat([head, data, tail]));
    try {
      withFd(file('in'), 'r', (fd) => {
        expect(readSync(fd, Buffer.alloc(4))).toBe(4);
        expect(c.fdToShm(fd, shmid, 0, size, 0x77)).toBe(c.crc32c(data, 0x77));
        const after = Buffer.alloc(8);
        expect(after.subarray(0, readSync(fd, after)).toString()).toBe('tail'); // the position moved past the bytes
      });
      withFd(file('out'), 'w', (fd) => {
        writeSync(fd, head);
        expect(c.shmToFd(fd, shmid, 0, size, 0x77)).toBe(c.crc32c(data, 0x77));
        writeSync(fd, tail);
      });
      expect(readFileSync(file('out')).equals(Buffer.concat([head, data, tail]))).toBe(true);
      // A file that ends in the last thread's range.
      writeFileSync(file('in'), data.subarray(0, size - 5000));
      expect(thrown(() => withFd(file('in'), 'r', (fd) => c.fdToShm(fd, shmid, 0, size, 0))).code).toBe('ENODATA');
      // Writes that fail (a descriptor open for reading): the error, from whichever thread.
      expect(thrown(() => withFd(file('in'), 'r', (fd) => c.shmToFd(fd, shmid, 0, size, 0))).code).toBe('EBADF');
    } finally {
      rmSync(file('in'), { force: true });
      rmSync(file('out'), { force: true });
    }
  });

  /**
   * One copy by the addon in a child node process, with prefix before node
   * (setpriv, unshare): what it returned (the crc) or threw (the code).
   */
  const copyInChild = (prefix: string[], call: 'fdToShm' | 'shmToFd', path: string, flags: string, shmid: number, size: number): string =>
    copyCounted(prefix, call, path, flags, shmid, size).split(' ')[0];
  /** The same, with the page faults the copy took: "RESULT FAULTS". */
  const copyCounted = (prefix: string[], call: 'fdToShm' | 'shmToFd', path: string, flags: string, shmid: number, size: number): string => {
    const script = `const a = require(process.argv[1]); const fd = require('node:fs').openSync(process.argv[2], process.argv[3]);
      const faults = () => process.resourceUsage().minorPageFault; const before = faults();
      try { console.log(a.${call}(fd, +process.argv[4], 0, +process.argv[5], 0), faults() - before); } catch (e) { console.log(e.code); }`;
    const [program, ...args] = [...prefix, process.execPath, '-e', script, ADDON_PATH, path, flags, String(shmid), String(size)];
    const r = spawnSync(program, args, { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    return r.stdout.trim();
  };
  /** No capabilities at all, even as root: no CAP_CHECKPOINT_RESTORE to open a segment's own file. */
  const NO_CAPS = process.geteuid!() === 0 ? ['setpriv', '--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all'] : [];

  /** Whether this process may open a mapping's file through /proc/self/map_files (CAP_CHECKPOINT_RESTORE in the first user namespace). */
  const opensMapFiles = (): boolean => {
    const entry = readdirSync('/proc/self/map_files')[0];
    try {
      closeSync(openSync(join('/proc/self/map_files', entry), 'r'));
      return true;
    } catch {
      return false;
    }
  };

  it("copies the same bytes and crc both ways through the segment's own file (root) or through its mapping (no capabilities); only the mapping's way touches its pages", () => {
    const viaFileAsIs = opensMapFiles();
    for (const size of [3 * MiB + 5, 64 * MiB + 12_345]) {
      const data = randomBytes(size);
      writeFileSync(file('in'), data);
      try {
        for (const prefix of [[], NO_CAPS]) {
          const viaFile = viaFileAsIs && prefix.length === 0;
          const shmid = create('shm', 0, size);
          const [restored, restoreFaults] = copyCounted(prefix, 'fdToShm', file('in'), 'r', shmid, size).split(' ');
          expect(restored).toBe(String(c.crc32c(data)));
          const [saved, saveFaults] = copyCounted(prefix, 'shmToFd', file('out'), 'w', shmid, size).split(' ');
          expect(saved).toBe(String(c.crc32c(data)));
          expect(readFileSync(file('out')).equals(data)).toBe(true);
          c.ipcRemove('shm', shmid);
          // Through the mapping every page is faulted in (populated); through the file none is.
          const pages = Math.floor(size / 4096);
          if (size > 16 * MiB)
            for (const faults of [Number(restoreFaults), Number(saveFaults)]) {
              if (viaFile) expect(faults).toBeLessThan(pages / 4);
              else expect(faults).toBeGreaterThanOrEqual(pages);
            }
        }
      } finally {
        rmSync(file('in'), { force: true });
        rmSync(file('out'), { force: true });
      }
    }
  });

  it('a snapshot file with no room for the segment: ENOSPC before any byte is written (a 1 MiB tmpfs in a mount namespace of its own)', () => {
    const size = 4 * MiB;
    const shmid = create('shm', 0, size);
    const dir = file('small');
    mkdirSync(dir);
    const target = join(dir, 'snap');
    try {
      // Mounted, the file made empty, the copy, then the file's size: all inside the namespace.
      const script = 'dir=$1 target=$2; shift 2; mount -t tmpfs -o size=1m appshot-test "$dir" && : > "$target" && "$@" && stat -c %s "$target"';
      const ns = process.geteuid!() === 0 ? ['--mount'] : ['--user', '--map-root-user', '--mount'];
      const prefix = ['unshare', ...ns, '--propagation', 'private', 'sh', '-c', script, 'sh', dir, target];
      expect(copyInChild(prefix, 'shmToFd', target, 'r+', shmid, size).split('\n')).toEqual(['ENOSPC', '0']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a range past the end, and reports a file that ends early', () => {
    const shmid = create('shm', 0, 4096);
    writeFileSync(file('short'), randomBytes(100));
    try {
      const e = thrown(() => withFd(file('short'), 'r', (fd) => c.shmToFd(fd, shmid, 4000, 97, 0)));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toMatch(new RegExp(`^shmToFd on shared memory segment ${shmid} .*: Invalid argument$`));
      const short = thrown(() => withFd(file('short'), 'r', (fd) => c.fdToShm(fd, shmid, 0, 200, 0)));
      expect(short.code).toBe('ENODATA');
      expect(short.errno).toBe(61);
      expect(thrown(() => c.shmToFd(1, 0x7ffffff0, 0, 1, 0)).code).toBe('EINVAL'); // no such segment
    } finally {
      rmSync(file('short'), { force: true });
    }
  });
});

describe('message queues', () => {
  const messages = [
    { type: 7, data: Buffer.from('first') },
    { type: 1, data: Buffer.alloc(0) },
    { type: 3, data: randomBytes(1000) },
  ];

  it('copies every message in order and leaves them queued', () => {
    const msqid = create('msg', 0, 0);
    expect(c.msgCopyAll(msqid)).toEqual([]);
    c.msgSendAll(msqid, messages);
    expect(c.ipcStat('msg', msqid).qnum).toBe(3);
    expect(c.msgCopyAll(msqid)).toEqual(messages);
    expect(c.ipcStat('msg', msqid).qnum).toBe(3);
    expect(c.msgCopyAll(msqid)).toEqual(messages); // a second copy sees the same
  });

  it('sends a list into a fresh queue that copies back the same', () => {
    const from = create('msg', KEY + 1, 0);
    const to = create('msg', 0, 0);
    c.msgSendAll(from, messages);
    c.msgSendAll(to, c.msgCopyAll(from));
    expect(c.msgCopyAll(to)).toEqual(messages);
  });

  it('says the queue is full', () => {
    const msqid = create('msg', 0, 0);
    c.ipcSetPerm('msg', msqid, { ...c.ipcStat('msg', msqid), qbytes: 100 });
    expect(c.ipcStat('msg', msqid).qbytes).toBe(100);
    const e = thrown(() => c.msgSendAll(msqid, [1, 2, 3].map((type) => ({ type, data: Buffer.alloc(40) }))));
    expect(e.code).toBe('EAGAIN');
    expect(e.message).toContain('the queue is full after 2 of 3 messages');
    expect(c.ipcStat('msg', msqid).qnum).toBe(2);
  });
});

describe('semaphores, permissions, creation', () => {
  it('sets and gets every value of a set', () => {
    const semid = create('sem', 0, 4);
    expect(c.semGetAll(semid)).toEqual([0, 0, 0, 0]);
    c.semSetAll(semid, [1, 2, 3, 32767]);
    expect(c.semGetAll(semid)).toEqual([1, 2, 3, 32767]);
    expect(thrown(() => c.semSetAll(semid, [1])).code).toBe('EINVAL');
  });

  it('captures many sets in one call: owner, mode and values, and an errno for a set that is gone', () => {
    const a = create('sem', KEY + 0x10, 3, 0o640);
    const b = create('sem', 0, 1);
    c.semSetAll(a, [5, 0, 32767]);
    c.semSetAll(b, [9]);
    const got = [...c.semCapture(Int32Array.from([a, 0x7ffffff0, b]))];
    const uid = process.getuid!();
    const gid = process.getgid!();
    expect(got).toEqual([0, KEY + 0x10, uid, gid, 0o640, 3, 5, 0, 32767, 22, 0, 0, uid, gid, 0o600, 1, 9]);
  });

  it('reads and sets the permissions of each family', () => {
    const sizes = { sem: 2, shm: 8192, msg: 0 } as const;
    for (const [i, type] of (['sem', 'shm', 'msg'] as const).entries()) {
      const id = create(type, KEY + 0x10 + i, sizes[type], 0o600);
      const st = c.ipcStat(type, id);
      expect(st).toMatchObject({ key: KEY + 0x10 + i, mode: 0o600, uid: process.getuid!(), cuid: process.getuid!() });
      expect([st.nsems, st.size]).toEqual([type === 'sem' ? 2 : 0, type === 'shm' ? 8192 : 0]);
      c.ipcSetPerm(type, id, { uid: st.uid, gid: st.gid, mode: 0o640 });
      expect(c.ipcStat(type, id)).toEqual({ ...st, mode: 0o640 });
    }
  });

  it('creates under the inflight record, one object at a time', () => {
    const id = c.ipcCreate(home, AID, 'shm', KEY + 0x20, 4096, 0o600);
    made.push(['shm', id]);
    expect(kernelObjects('shm').get(id)?.key).toBe(KEY + 0x20);
    // Not cleared: a second creation is refused, and recovery would remove the first.
    expect(() => c.ipcCreate(home, AID, 'msg', 0, 0, 0o600)).toThrow(/inflightClear/);
    expect(c.recoverInflight(home, () => false)).toContain(`shared memory segment ${id}`);
    expect(kernelObjects('shm').has(id)).toBe(false);
    c.inflightClear(home);
    // Cleared: recovery leaves the next one alone.
    const kept = create('shm', 0, 4096);
    expect(c.recoverInflight(home, () => false)).toBeNull();
    expect(kernelObjects('shm').has(kept)).toBe(true);
  });

  it('throws EEXIST for a key that is taken, and clears the record', () => {
    create('sem', KEY + 0x30, 1);
    const e = thrown(() => c.ipcCreate(home, AID, 'sem', KEY + 0x30, 1, 0o600));
    expect(e.code).toBe('EEXIST');
    expect(e.errno).toBe(17);
    expect(e.message).toBe('ipcCreate of a semaphore set with key 0x5c000030: File exists');
    create('msg', KEY + 0x30, 0); // no inflightClear was needed after the failure
  });
});
