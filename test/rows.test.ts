import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, SHIM_PATH, builtProgram } from '../ts/paths.js';
import { registerApp } from '../ts/registry.js';
import * as rows from '../ts/rows.js';
import { type TableDb, openTableDb, writeTxn } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { PIDTOOL, SEMTOOL, SHMTOOL, appshot, appshotAsync, appshotLater, makeHome, tablesJson, testRoot, waitFor } from './helpers.js';

const ROWOPS = builtProgram('rowops');

interface FwdSpec {
  aid: string;
  type: S.ResourceType;
  vrid: number;
  srid: number;
  vkey?: number;
  skey?: number;
  creator?: number;
  createdMs?: number;
}
interface RevSpec {
  type: S.ResourceType;
  srid: number;
  aid: string;
  vrid: number;
}
interface AllocSpec {
  aid: string;
  type: S.ResourceType;
  next: number;
}
interface RowSet {
  fwd?: FwdSpec[];
  rev?: RevSpec[];
  alloc?: AllocSpec[];
}
interface Op {
  op: 'claim-skey' | 'claim' | 'release' | 'put-fwd' | 'map-at' | 'map-over' | 'unmap';
  type: S.ResourceType;
  vrid?: number;
  srid?: number;
  vkey?: number;
  identity?: boolean;
  row?: Partial<S.FwdVal> & { srid: number };
}
interface Scenario {
  name: string;
  aid: string;
  noIdentity?: boolean;
  before?: RowSet;
  op: Op;
  result: string;
  after: RowSet;
}

const vectors: { scenarios: Scenario[] } = JSON.parse(readFileSync(`${ROOT}/tables/rows.json`, 'utf8'));

const fullRow = (r: Partial<S.FwdVal> & { srid: number }): S.FwdVal => ({ vkey: 0, skey: 0, creator: 0, createdMs: 0, ...r });

/** Writes the rows as they are, bypassing ts/rows.ts: the scenario's start. */
function seed(t: TableDb, set: RowSet = {}): void {
  writeTxn(t, () => {
    for (const f of set.fwd ?? []) t.fwd.putSync(S.fwdKey(f.aid, S.RT[f.type], f.vrid), S.fwdVal(fullRow(f)));
    for (const r of set.rev ?? []) t.rev.putSync(S.revKey(t.node, S.RT[r.type], r.srid), S.revVal(r.vrid, r.aid));
    for (const a of set.alloc ?? []) t.alloc.putSync(S.allocKey(a.aid, S.RT[a.type]), S.u32(a.next));
  });
}

/** Every fwd, rev and alloc row, in key order, as the scenarios write them. */
function dump(t: TableDb): Required<RowSet> {
  return {
    fwd: [...t.fwd.getRange({})].map(({ key, value }) => {
      const k = S.decodeFwdKey(key);
      return { aid: k.aid, type: S.RT_NAME[k.type], vrid: k.vrid, ...S.decodeFwdVal(value) };
    }),
    rev: [...t.rev.getRange({})].map(({ key, value }) => {
      expect(key.readUInt32BE(0)).toBe(t.node);
      return { type: S.RT_NAME[key[4]], srid: key.readUInt32BE(5), ...S.decodeRevVal(value) };
    }),
    alloc: [...t.alloc.getRange({})].map(({ key, value }) => ({ aid: key.toString('latin1', 0, key.length - 2), type: S.RT_NAME[key[key.length - 1]], next: S.readU32(value) })),
  };
}

/** The scenario's expected rows, filled out and in key order, as dump gives them. */
function expected(t: TableDb, set: RowSet): Required<RowSet> {
  const byKey = <T>(key: (x: T) => Buffer) => (a: T, b: T) => Buffer.compare(key(a), key(b));
  return {
    fwd: (set.fwd ?? []).map((f) => ({ ...f, ...fullRow(f) })).sort(byKey((f) => S.fwdKey(f.aid, S.RT[f.type], f.vrid))),
    rev: [...(set.rev ?? [])].sort(byKey((r) => S.revKey(t.node, S.RT[r.type], r.srid))),
    alloc: [...(set.alloc ?? [])].sort(byKey((a) => S.allocKey(a.aid, S.RT[a.type]))),
  };
}

/** The operation through ts/rows.ts, in a write transaction of its own. */
function applyTs(t: TableDb, sc: Scenario): string {
  const { op, type: name } = sc.op;
  const type = S.RT[name];
  const o = sc.op;
  return writeTxn(t, () => {
    switch (op) {
      case 'claim-skey':
        return `skey ${rows.claimSkey(t, sc.aid, type, o.vkey!, !!o.identity && !sc.noIdentity)}`;
      case 'claim':
        return rows.claim(t, sc.aid, type, o.vrid!, o.srid!) ? 'ok' : 'held';
      case 'release':
        return rows.release(t, type, o.srid!) ? 'ok' : 'none';
      case 'put-fwd':
        rows.putFwd(t, sc.aid, type, o.vrid!, fullRow(o.row!));
        return 'ok';
      case 'map-at':
        return rows.mapAt(t, sc.aid, type, o.vrid!, fullRow(o.row!)) ? 'ok' : 'held';
      case 'map-over':
        rows.mapOver(t, sc.aid, type, o.vrid!, fullRow(o.row!));
        return 'ok';
      case 'unmap':
        return rows.unmap(t, sc.aid, type, o.vrid!) ? 'ok' : 'none';
    }
  });
}

/** The operation through the C functions (native/testcore/rowops.c). */
function applyC(home: string, sc: Scenario): string {
  const o = sc.op;
  const type = String(S.RT[o.type]);
  const row = (r: S.FwdVal) => [r.srid, r.vkey, r.skey, r.creator, r.createdMs].map(String);
  const args: Record<Op['op'], () => string[]> = {
    'claim-skey': () => [type, String(o.vkey), o.identity ? '1' : '0'],
    claim: () => [type, String(o.vrid), String(o.srid)],
    release: () => [type, String(o.srid)],
    'put-fwd': () => [type, String(o.vrid), ...row(fullRow(o.row!))],
    'map-at': () => [type, String(o.vrid), ...row(fullRow(o.row!))],
    'map-over': () => [type, String(o.vrid), ...row(fullRow(o.row!))],
    unmap: () => [type, String(o.vrid)],
  };
  const r = spawnSync(ROWOPS, [home, sc.aid, sc.noIdentity ? '1' : '0', o.op, ...args[o.op]()], { encoding: 'utf8' });
  expect(r.status, r.stdout + r.stderr).toBe(0);
  return r.stdout.trim();
}

/** Runs the scenario on fresh tables through one side; gives its result and the rows after. */
function play(sc: Scenario, side: 'C' | 'TypeScript') {
  const home = makeHome();
  let t = openTableDb(home, { create: true });
  seed(t, sc.before);
  let result: string;
  if (side === 'TypeScript') result = applyTs(t, sc);
  else {
    t.env.close();
    result = applyC(home, sc);
    t = openTableDb(home);
  }
  try {
    return { result, rows: dump(t), want: expected(t, sc.after) };
  } finally {
    t.env.close();
  }
}

describe('row operations: C and TypeScript satisfy the same scenario vectors (tables/rows.json)', () => {
  for (const side of ['C', 'TypeScript'] as const) {
    it.each(vectors.scenarios.map((sc) => [sc.name, sc] as const))(`${side}: %s`, (_name, sc) => {
      const { result, rows: after, want } = play(sc, side);
      expect(result).toBe(sc.result);
      expect(after).toEqual(want);
    });
  }
});

describe('one owner of fwd and rev row writes', () => {
  it('no TypeScript module but ts/rows.ts writes a forward or reverse row', () => {
    const writers: string[] = [];
    const read: string[] = [];
    for (const dir of ['ts', 'ts/sysv', 'tables', 'harness', 'harness/views']) {
      for (const name of readdirSync(join(ROOT, dir)).filter((n) => n.endsWith('.ts'))) {
        const file = `${dir}/${name}`;
        if (file === 'ts/rows.ts') continue;
        const text = readFileSync(join(ROOT, file), 'utf8');
        read.push(file);
        for (const m of text.matchAll(/\.(fwd|rev)\.(put|putSync|remove|removeSync|ifNoExists|clearSync|clearAsync|drop|dropSync)\(/g)) writers.push(`${file}: ${m[0]}`);
      }
    }
    expect(read).toEqual(expect.arrayContaining(['ts/restore.ts', 'ts/cleanup.ts', 'ts/verify.ts', 'ts/sysv/object.ts', 'ts/sysv/shm.ts', 'harness/cli.ts']));
    expect(writers).toEqual([]);
  });
});

describe('restore maps its objects through the shared row operations', () => {
  // The kernel's shm_next_id hands restore a chosen ID: only in the suite's
  // own IPC namespace (scripts/test.sh), never on a shared host's.
  it.skipIf(process.env.APPSHOT_TEST_NS !== 'private')(
    "a stale reverse row for the ID restore is given does not take another application's live mapping with it",
    async () => {
      const home = makeHome();
      // A snapshot of one private segment.
      const saved = appshotAsync(home, ['run', '--aid', 'saved', '--', SHMTOOL, 'private', '4096', 'attach', '-', 'write', 'kept', 'waitfile', join(home, 'never')]);
      await waitFor(saved.out, /ok\n/);
      const file = join(home, 'saved.snap');
      const snap = appshot(home, ['snapshot', 'saved', '--ipc-only', '-o', file, '--stop']);
      expect(snap.stderr).toBe('');
      expect(snap.code).toBe(0);
      await saved.done;

      // Application 'a' maps a segment of its own, live.
      const go = join(home, 'go');
      const a = appshotAsync(home, ['run', '--aid', 'a', '--', SHMTOOL, 'private', '4096', 'waitfile', go, 'stat']);
      await waitFor(a.out, /^id \d+\n/);
      const [mine] = tablesJson(home, ['--aid', 'a', '--type', 'shm']);
      expect(mine).toBeDefined();

      // The reverse row of an earlier segment of 'a', removed behind the
      // shim, still names a's vrid; the kernel hands that ID out next.
      const stale = 5 * 32768 + 777;
      const t = openTableDb(home);
      writeTxn(t, () => t.rev.putSync(S.revKey(t.node, S.RT.shm, stale), S.revVal(mine.virtual, 'a')));
      t.env.close();
      writeFileSync('/proc/sys/kernel/shm_next_id', String(stale));

      const r = appshot(home, ['restore', file, '--aid', 'b', '--', 'true']);
      expect(r.stderr).toMatch(/^appshot: restored 'b'/);
      expect(r.code).toBe(0);
      expect(readFileSync('/proc/sys/kernel/shm_next_id', 'utf8').trim()).toBe('-1'); // restore took it

      // a's mapping is intact: its program still reaches its segment.
      expect(tablesJson(home, ['--aid', 'a', '--type', 'shm'])).toEqual([mine]);
      writeFileSync(go, '');
      const end = await a.done;
      expect(end.stdout).toMatch(/\nok 0\nkey 0x00000000 size 4096 /);
      expect(end.code).toBe(0);
    },
  );
});

describe('restore over rows an earlier run left', () => {
  it('restore under an ended AID whose rows are left (a segment attached outside) refuses, touching nothing, instead of overwriting them', async () => {
    const home = makeHome();
    const go = join(home, 'go');
    const h = appshotAsync(home, ['run', '--aid', 'left', '--', SHMTOOL, 'private', '4096', 'attach', '-', 'write', 'x', 'waitfile', go]);
    await waitFor(h.out, /attached ok\nok 0\n/);
    const file = join(home, 'left.snap');
    expect(appshot(home, ['snapshot', 'left', '--ipc-only', '-o', file]).code).toBe(0);
    const [seg] = tablesJson(home, ['--aid', 'left', '--type', 'shm']);
    // A process outside the application keeps the segment attached, so
    // the application's end leaves its rows.
    const outsideGo = join(home, 'outside-go');
    const outside = spawn(SHMTOOL, ['use', String(seg.system), 'attach', '-', 'waitfile', outsideGo], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    outside.stdout!.on('data', (d) => (out += d));
    const outsideDone = new Promise((resolve) => outside.on('close', resolve));
    try {
      await waitFor(() => out, /attached ok/);
      writeFileSync(go, '');
      expect((await h.done).code).toBe(0);
      expect(tablesJson(home, ['--aid', 'left', '--type', 'shm'])).toEqual([seg]);

      const r = appshot(home, ['restore', file, '--aid', 'left', '--', 'true']);
      expect(r.stderr).toBe(
        "appshot: application 'left' has ended but rows of its objects are left (a shared memory segment still attached outside it: 'appshot gc' says which); restore under another --aid, or run 'appshot gc' once they are detached\n",
      );
      expect(r.code).toBe(3);
      expect(tablesJson(home, ['--aid', 'left', '--type', 'shm'])).toEqual([seg]);
    } finally {
      writeFileSync(outsideGo, '');
      await outsideDone;
    }
    expect(appshot(home, ['gc']).code).toBe(0);
    expect(tablesJson(home, ['--aid', 'left'])).toEqual([]);
  });
});

describe('the shim in a fork child', () => {
  it('a child forked while another thread records its chdir resolves relative paths (the working-directory record starts again)', async () => {
    const base = mkdtempSync(join(testRoot(), 'chdirfork-'));
    mkdirSync(join(base, 'real'));
    // Thousands of forks: before the fix one in a few hundred children
    // found the record half written and waited for it forever.
    const r = await appshotLater(makeHome(), ['run', '--redir', `${join(base, 'v')}=${join(base, 'real')}`, '--', builtProgram('chdirfork'), join(base, 'v'), '3000']);
    expect(r.stdout).toBe('forked 3000\n');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

/** Writes bytes into the tables file at offset. */
function patch(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

describe('the shim checks the tables file header before LMDB maps it', () => {
  const u32le = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const psize = 4096;
  it.each([
    ['cut short after its meta pages', (f: string) => truncateSync(f, 2 * psize), /it is truncated: 8192 bytes/],
    ['without the LMDB magic in either meta page', (f: string) => [0, psize].forEach((at) => patch(f, at + 24, u32le(0x12345678))), /header page 0 is not LMDB's \(it is overwritten\)/],
    ['of another data format in both meta pages', (f: string) => [0, psize].forEach((at) => patch(f, at + 28, u32le(7))), /its data format is 7, not LMDB's 2/],
  ])('tables %s: a program under the shim refuses to start (exit 125, "damaged")', (_what, damage, why) => {
    const home = makeHome();
    const t = openTableDb(home, { create: true });
    registerApp(t, { aid: 'x', command: ['semtool'] });
    // Rows enough that the root pages lie past the two meta pages.
    writeTxn(t, () => {
      for (let v = 1; v <= 200; v++) t.procs.putSync(S.procKey(v), S.procVal(v, 'x'));
    });
    t.env.close();
    damage(join(home, S.TABLES_FILE));
    const r = spawnSync(SEMTOOL, ['private', '1'], {
      encoding: 'utf8',
      env: { ...process.env, LD_PRELOAD: SHIM_PATH, APPSHOT_AID: 'x', APPSHOT_HOME: home },
    });
    expect(r.signal).toBe(null);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^appshot: the tables at ${join(home, S.TABLES_FILE)} are damaged: ${why.source}; nothing was changed`));
    expect(r.status).toBe(125);
  });
});

describe('process rows whose commit fails', () => {
  it('a remapped fork child whose row and reserved vpid could not be committed is known by its kernel PID, which its parent can wait for', () => {
    // RLIMIT_FSIZE 0 in the program makes every commit of its shim fail
    // (EFBIG), after the first process's row was written.
    const r = appshot(makeHome(), ['run', '--no-identity', '--', PIDTOOL, 'nowrite', 'child', '0']);
    expect(r.stderr).toMatch(/appshot: cannot commit to tables at .*: File too large/);
    const out = r.stdout.trim().split('\n');
    expect(out[0]).toBe('ok 0');
    const child = Number(/^forked (\d+)$/.exec(out[1])?.[1]);
    expect(child).toBeLessThan(S.VRID_REMAP_BASE); // not a vpid no row names
    expect(out.slice(2)).toEqual([expect.stringMatching(new RegExp(`^child pid ${child} ppid \\d+$`)), `reaped ${child} status 0`]);
    expect(r.code).toBe(0);
  });
});

describe('attachments of a shared memory segment', () => {
  it('an attachment that mprotect split into three mappings counts once in a snapshot, as the shim counts it', async () => {
    const home = makeHome();
    const go = join(home, 'go');
    const h = appshotAsync(home, ['run', '--aid', 'split', '--', SHMTOOL, 'private', '65536', 'attach', '-', 'protect', '4096', '4096', 'r', 'waitfile', go]);
    await waitFor(h.out, /attached ok\nok 0\n/);
    const file = join(home, 'split.snap');
    const snap = appshot(home, ['snapshot', 'split', '--ipc-only', '-o', file]);
    expect(snap.stderr).toBe('');
    expect(snap.code).toBe(0);
    writeFileSync(go, '');
    expect((await h.done).code).toBe(0);
    const inspect = appshot(home, ['snapshot', 'inspect', file, '--json']);
    expect(inspect.code).toBe(0);
    expect(JSON.parse(inspect.stdout).segments.map((s: { attached: unknown }) => s.attached)).toEqual([{ rw: 1, ro: 0 }]);
  });
});
