import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtProgram, CLI_PATH } from '../ts/paths.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { CREATOR_TEMPLATE } from '../tables/schema.js';
import { SHMTOOL, appshot, appshotAsync, appshotLater, makeHome, runLater, runNative, tablesJson, waitFor } from './helpers.js';

const TABLESERVER = builtProgram('tableserver');
const TABLE_KEY = 0x7ab1e;
const TABLE_BYTES = 1 << 20;
const PUBLIC_PORT = 18190;

/** Every SysV object the kernel holds, as "sem 5", ... */
function ipcSet(): Set<string> {
  const all = new Set<string>();
  for (const type of ['sem', 'shm', 'msg'] as const) for (const id of kernelObjects(type).keys()) all.add(`${type} ${id}`);
  return all;
}

/** One request to the server at port: its one-line answer, parsed. */
function ask(port: number): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write('hi\n'));
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^name=(\S+) counter=(\d+) table=(\S+) pid=(\d+) config=(.*)$/.exec(data.trim());
      if (!m) return reject(new Error(`not an answer: ${JSON.stringify(data)}`));
      resolve({ name: m[1], counter: m[2], table: m[3], pid: m[4], config: m[5] });
    });
  });
}

/** The warmed-up application of the issue: tableserver loaded its table,
 * read its config, answered twice (counter 2), published 8080 at
 * PUBLIC_PORT; then snapshotted with --stop. */
async function warmSnapshot(home: string): Promise<{ dir: string; config: string; snap: string }> {
  const dir = join(home, 'srv', 'app');
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'config');
  writeFileSync(config, 'the template config\n');
  const h = appshotAsync(home, ['run', '--aid', 'warm', '--publish', `${PUBLIC_PORT}:8080`, '--', TABLESERVER, '8080', config, '0x7ab1e', '0xc0de', String(TABLE_BYTES)]);
  await waitFor(h.out, /ready/);
  expect(h.out()).toContain('loaded table');
  expect((await ask(PUBLIC_PORT)).counter).toBe('1');
  expect((await ask(PUBLIC_PORT)).counter).toBe('2');
  const snap = join(home, 'warm.snap');
  const s = appshot(home, ['snapshot', 'warm', '--ipc-only', '-o', snap, '--stop']);
  expect(s.code, s.stderr).toBe(0);
  await h.done;
  return { dir, config, snap };
}

const RULES = (dir: string) => `# each clone reads its own config
DEFINE <APPL-ID> AS PROPERTY application-id
REDIR PATH "${dir}/config" TO "${dir}/<APPL-ID>/config"
SET ENV "APP_NAME" = "<APPL-ID>"
`;

function tableSegments(): number {
  return [...kernelObjects('shm').values()].filter((o) => o.key === TABLE_KEY).length;
}

describe('template create and clone (the issue scenario)', () => {
  it('clones a warmed-up server three times: own counter and config each, one shared table, one pool, no reload', async () => {
    const home = makeHome();
    const { dir, config, snap } = await warmSnapshot(home);
    const rules = join(home, 'rules');
    writeFileSync(rules, RULES(dir));
    for (const n of [1, 2, 3]) {
      mkdirSync(join(dir, `web-${n}`));
      writeFileSync(join(dir, `web-${n}`, 'config'), `config of web-${n}\n`);
    }
    const before = ipcSet();
    const c = appshot(home, ['template', 'create', 'web', '--from', snap, '--rules', rules]);
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(c.stdout).toMatch(/template 'web' made from .*: 7 resources \(2 shared, 1 duplicate, 2 virtualize, 1 multiplex, 1 network-unique\)/);

    const inspect = JSON.parse(appshot(home, ['template', 'inspect', 'web', '--json']).stdout);
    const cls = Object.fromEntries(inspect.resources.map((r: { name: string; class: string }) => [r.name.replace(/ \d+$/, ''), r.class]));
    expect(cls).toMatchObject({ sem: 'duplicate', shm: 'shared', 'key 0xc0de (sem)': 'virtualize', 'key 0x7ab1e (shm)': 'shared', pid: 'virtualize', 'port 8080/tcp': 'multiplex', 'application-id': 'network-unique' });
    const shm = inspect.resources.find((r: { kind: string }) => r.kind === 'shm');
    expect(shm.why).toMatch(/every attachment at the snapshot was read-only/);
    expect(tableSegments()).toBe(1); // the template's, made once

    const h = appshotAsync(home, ['template', 'clone', 'web', '-n', '3']);
    await waitFor(h.err, /all 3 clones of template 'web' are running/);
    await waitFor(h.out, /(ready[\s\S]*){3}/);
    expect(h.err()).toMatch(/clone 'web-1' of template 'web' ready in [\d.]+ ms \(copying [\d.]+ ms of it\): 1 shared segment\(s\) mapped/);
    expect(h.out()).not.toContain('loaded table');
    expect(h.out().match(/attached table/g)).toHaveLength(3);

    const answers = [];
    for (let i = 0; i < 9; i++) answers.push(await ask(PUBLIC_PORT));
    const byClone = new Map<string, Record<string, string>[]>();
    for (const a of answers) byClone.set(a.name, [...(byClone.get(a.name) ?? []), a]);
    expect([...byClone.keys()].sort()).toEqual(['web-1', 'web-2', 'web-3']);
    for (const [name, as] of byClone) {
      expect(as.map((a) => a.config)).toEqual(Array(3).fill(`config of ${name}`));
      expect(as.map((a) => a.counter)).toEqual(['3', '4', '5']); // each its own counter, from the snapshot's 2
      expect(new Set(as.map((a) => a.table)).size).toBe(1);
      expect(readFileSync(join(dir, name, 'config'), 'utf8')).toBe(`config of ${name}\n`);
    }
    expect(new Set(answers.map((a) => a.table)).size).toBe(1);
    expect(tableSegments()).toBe(1); // still one kernel object, attached by all three
    expect([...kernelObjects('shm').values()].find((o) => o.key === TABLE_KEY)!.nattch).toBe(3);
    expect(readFileSync(config, 'utf8')).toBe('the template config\n');

    const ps = appshot(home, ['ps', '--json']);
    expect(new Set(JSON.parse(ps.stdout).map((p: { aid: string }) => p.aid))).toEqual(new Set(['web-1', 'web-2', 'web-3']));
    const list = appshot(home, ['template', 'list', '--json']);
    expect(JSON.parse(list.stdout)[0]).toMatchObject({ name: 'web', clones: ['web-1', 'web-2', 'web-3'] });
    const apps = JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout);
    expect(apps.map((a: { aid: string; state: string; template: string | null }) => [a.aid, a.state, a.template])).toEqual([
      ['template.web', 'template', null],
      ['warm', 'ended', null],
      ['web-1', 'running', 'web'],
      ['web-2', 'running', 'web'],
      ['web-3', 'running', 'web'],
    ]);
    const verify = appshot(home, ['tables', '--verify']);
    expect(verify.stdout + verify.stderr).not.toMatch(/problem|no template holds|two mappings/);
    expect(verify.code).toBe(0);
    const busy = appshot(home, ['template', 'rm', 'web']);
    expect(busy.code).toBe(3);
    expect(busy.stderr).toMatch(/template 'web' has 3 running clone\(s\) \(web-1, web-2, web-3\)/);

    // Scaling up while they run: another command's clone joins the same pool.
    const more = appshotAsync(home, ['template', 'clone', 'web']);
    await waitFor(more.err, /clone 'web-4' of template 'web' is running/);
    await waitFor(more.out, /ready/);
    const served = new Map<string, number>();
    for (let i = 0; i < 8; i++) {
      const a = await ask(PUBLIC_PORT);
      served.set(a.name, (served.get(a.name) ?? 0) + 1);
    }
    expect([...served.keys()].sort()).toEqual(['web-1', 'web-2', 'web-3', 'web-4']);
    expect(tableSegments()).toBe(1);
    more.child.kill('SIGTERM');
    h.child.kill('SIGTERM');
    expect((await more.done).code).not.toBeNull();
    expect((await h.done).code).not.toBeNull();
    const rm = appshot(home, ['template', 'rm', 'web']);
    expect(rm.stderr).toBe('');
    expect(rm.code).toBe(0);
    expect(tableSegments()).toBe(0);
    expect([...ipcSet()].filter((o) => !before.has(o))).toEqual([]);
  });
});

describe('template bad input and limits', () => {
  let snap = '';
  let dir = '';
  const snapshotOnce = async () => {
    if (!snap) ({ snap, dir } = await warmSnapshot(makeHome()));
    return snap;
  };

  const refused = async (rules: string, message: RegExp) => {
    const home = makeHome();
    const file = join(home, 'rules');
    writeFileSync(file, rules);
    const before = ipcSet();
    const r = await appshotLater(home, ['template', 'create', 'bad', '--from', await snapshotOnce(), '--rules', file]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/nothing was made/);
    expect((await appshotLater(home, ['template', 'list'])).stdout).toMatch(/^no templates/);
    expect(JSON.parse((await appshotLater(home, ['tables', '--apps', '--json'])).stdout)).toEqual([]);
    expect([...ipcSet()].filter((o) => !before.has(o))).toEqual([]);
  };

  it('refuses a rule file with a syntax error, naming line and column', async () => {
    await refused('DEFINE <APPL-ID> AS PROPERTY application-id\nREDIR PATH "/a" INTO "/b"\n', /rules:2:17: expected TO, found 'INTO'/);
    await refused('SET ENV "HOME" = "/srv/app\n', /rules:1:18: this string has no closing double quote/);
    await refused('SET ENV "HOME" = "/srv/<NOPE>"\n', /rules:1:24: <NOPE> is not defined/);
    await refused('DEFINE <X> AS PROPERTY colour\n', /rules:1:24: unknown property 'colour': one of application-id, clone-number, template-name/);
  });

  it('refuses an unknown resource or type, and a class the resource cannot have', async () => {
    await refused('# keys\nSHARE shm KEY 0x99\n', /rules:2:1: unknown resource: the snapshot holds no shm with key 0x99/);
    await refused('SHARE socket KEY 1\n', /rules:1:7: unknown resource type 'socket': one of sem, shm, msg, port/);
    await refused('SHARE sem KEY 0xc0de\n', /rules:1:1: a sem cannot be shared: sem may be duplicate/);
    await refused('MULTIPLEX port 9999999\n', /rules:1:16: a port must be a number from 0 to 65535/);
  });

  it('refuses a REDIR target outside any directory the user can write', async () => {
    await refused(
      'DEFINE <APPL-ID> AS PROPERTY application-id\nREDIR PATH "/srv/app/config" TO "/proc/<APPL-ID>/config"\n',
      /rules:2:33: the REDIR target \/proc\/bad-1\/config is outside any directory you can write \(\/proc cannot be written/,
    );
    await refused('REDIR PATH "/" TO "/tmp/x"\n', /rules:1:12: redirection \/ -> \/tmp\/x: FROM is '\/', which would redirect every path/);
    await refused('REDIR PATH "/srv/app/config" TO "/etc/hostname/config"\n', /rules:1:33: the REDIR target \/etc\/hostname\/config is outside .*\/etc\/hostname is a file, not a directory/);
  });

  it('refuses a template whose snapshot file was altered, and a damaged snapshot', async () => {
    const home = makeHome();
    const copy = join(home, 'copy.snap');
    writeFileSync(copy, readFileSync(await snapshotOnce()));
    expect(appshot(home, ['template', 'create', 'alt', '--from', copy]).code).toBe(0);
    const bytes = readFileSync(copy);
    bytes[bytes.length - 100] ^= 0x40;
    writeFileSync(copy, bytes);
    const before = ipcSet();
    const r = appshot(home, ['template', 'clone', 'alt', '-n', '2', '--', 'true']);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/made 0 of 2 clones of template 'alt'; the remaining 2 were not made: template 'alt': its snapshot .*copy\.snap was altered after the template was made/);
    expect(JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout).map((a: { aid: string }) => a.aid)).toEqual(['template.alt']);
    expect([...ipcSet()].filter((o) => !before.has(o))).toEqual([]);
    const again = appshot(home, ['template', 'create', 'alt2', '--from', copy]);
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/is not a usable snapshot: section \d+ \(shared memory contents\) .* fails its checksum/);
    expect(appshot(home, ['template', 'rm', 'alt']).code).toBe(0);
  });

  it('stops at the port range: the clones made run, the rest are not half made', async () => {
    const home = makeHome();
    const rules = join(home, 'rules');
    writeFileSync(rules, 'VIRTUALIZE port 8080\n');
    expect(appshot(home, ['template', 'create', 'pr', '--from', await snapshotOnce(), '--rules', rules]).code).toBe(0);
    // Port 8080 itself taken by a program outside appshot: every clone needs the range.
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(8080, r));
    try {
      const r = appshot(home, ['template', 'clone', 'pr', '-n', '3', '--port-range', '20470-20471', '--', 'sleep', '0.5']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/clone 'pr-1' of template 'pr' ready .* ports 8080\/tcp -> 20470/);
      expect(r.stderr).toMatch(/clone 'pr-2' of template 'pr' ready .* ports 8080\/tcp -> 20471/);
      expect(r.stderr).toMatch(
        /made 2 of 3 clones of template 'pr' \(pr-1, pr-2, running\); the remaining 1 was not made: no free system port for virtual port 8080\/tcp of application 'pr-3': every port of the range 20470-20471 is taken/,
      );
    } finally {
      holder.close();
    }
    const apps = JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout).map((a: { aid: string }) => a.aid);
    expect(apps.sort()).toEqual(['pr-1', 'pr-2', 'template.pr']);
    expect(appshot(home, ['tables', '--json', '--aid', 'pr-3']).stderr).toMatch(/no application 'pr-3'/);
    expect(appshot(home, ['template', 'rm', 'pr']).code).toBe(0);
  });

  it('stops at a kernel limit (SEMMNI 2 in an IPC namespace of its own)', async () => {
    const home = makeHome();
    const rules = join(home, 'rules');
    writeFileSync(rules, 'VIRTUALIZE port 8080\n');
    const node = `${process.execPath} ${CLI_PATH}`;
    const script = [
      'echo "250 32000 32 2" > /proc/sys/kernel/sem',
      `${node} template create lim --from ${await snapshotOnce()} --rules ${rules} || exit 9`,
      `${node} template clone lim -n 4 -- sleep 0.5; echo "clone exit $?"`,
      `${node} template rm lim`,
    ].join('\n');
    const r = await runLater('unshare', ['--ipc', 'sh', '-c', script], { env: { ...process.env, APPSHOT_HOME: home } });
    expect(r.stdout).toMatch(/clone exit 1/);
    expect(r.stderr).toMatch(
      /made 2 of 4 clones of template 'lim' \(lim-1, lim-2, running\); the remaining 2 were not made: restore failed at semaphore set \d+: .*No space left on device \(a kernel limit: see ipcs -l\); everything it had made was removed/,
    );
    const apps = JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout).map((a: { aid: string }) => a.aid);
    expect(apps.sort()).toEqual(['lim-1', 'lim-2']);
  });
});

describe('template rules that override appshot', () => {
  it('duplicates a segment appshot would share, multiplexes at another public port, seeds each clone its own config', async () => {
    const home = makeHome();
    const { dir, snap } = await warmSnapshot(home);
    const rules = join(home, 'rules');
    writeFileSync(rules, RULES(dir) + 'DUPLICATE shm KEY 0x7ab1e\nMULTIPLEX port 8080 PUBLIC 18191\n' + `REDIR PATH "${dir}/run" TO "${dir}/<APPL-ID>/run"\n`);
    // A run directory as a killed server leaves it: a file, its Unix socket and a FIFO.
    const run = join(dir, 'run');
    mkdirSync(run);
    writeFileSync(join(run, 'server.pid'), '4242\n');
    expect(spawnSync('mkfifo', [join(run, 'fifo')]).status).toBe(0);
    expect(spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(join(run, 'sock'))})`]).status).toBe(0);
    expect(appshot(home, ['template', 'create', 'dup', '--from', snap, '--rules', rules]).code).toBe(0);
    const inspect = JSON.parse(appshot(home, ['template', 'inspect', 'dup', '--json']).stdout);
    const shm = inspect.resources.find((r: { kind: string }) => r.kind === 'shm');
    expect([shm.class, shm.why]).toEqual(['duplicate', 'rule at line 5']);
    expect(inspect.resources.find((r: { kind: string }) => r.kind === 'port')).toMatchObject({ class: 'multiplex', publicPort: 18191, why: 'rule at line 6' });
    expect(inspect.shared).toEqual([]);
    expect(tableSegments()).toBe(0);

    const h = appshotAsync(home, ['template', 'clone', 'dup', '-n', '2']);
    await waitFor(h.err, /all 2 clones of template 'dup' are running/);
    await waitFor(h.out, /(ready[\s\S]*){2}/);
    expect(h.err()).toMatch(/clone 'dup-1' of template 'dup' ready .*: 0 shared segment\(s\) mapped, 1 segment\(s\) copied \(1\.0 MiB\)/);
    expect(h.out()).not.toContain('loaded table');
    const answers = [await ask(18191), await ask(18191)];
    expect(answers.map((a) => [a.name, a.config, a.counter]).sort()).toEqual([
      ['dup-1', 'the template config', '3'],
      ['dup-2', 'the template config', '3'],
    ]);
    expect(answers[0].table).toBe(answers[1].table);
    // Each its own copy: two kernel segments, each attached once, under the same virtual ID.
    const rows = tablesJson(home, ['--type', 'shm']).filter((r) => r.aid.startsWith('dup-'));
    expect(rows.map((r) => r.aid).sort()).toEqual(['dup-1', 'dup-2']);
    expect(rows[0].virtual).toBe(rows[1].virtual);
    expect(rows[0].system).not.toBe(rows[1].system);
    for (const r of rows) expect(kernelObjects('shm').get(r.system)?.nattch).toBe(1);
    expect(tableSegments()).toBe(1); // dup-1 took the saved key itself, dup-2 a remapped one
    for (const n of [1, 2]) expect(readFileSync(join(dir, `dup-${n}`, 'config'), 'utf8')).toBe('the template config\n');
    // The run directory seeded without the socket and the FIFO: names, not data (cp cannot copy them).
    for (const n of [1, 2]) expect(readdirSync(join(dir, `dup-${n}`, 'run'))).toEqual(['server.pid']);
    h.child.kill('SIGTERM');
    await h.done;
    expect(appshot(home, ['template', 'rm', 'dup']).code).toBe(0);
  });
});

describe("a clone and the template's shared segment", () => {
  it('attaches it read-only, may not change it, and lets go of it alone on IPC_RMID', async () => {
    const home = makeHome();
    const { snap } = await warmSnapshot(home);
    expect(appshot(home, ['template', 'create', 'ro', '--from', snap]).code).toBe(0);
    const srid = JSON.parse(appshot(home, ['template', 'inspect', 'ro', '--json']).stdout).shared[0].srid;
    const script = `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
buf = ctypes.create_string_buffer(256)
id = libc.shmget(0x7ab1e, 0, 0)
print('get', id >= 0)
print('stat', libc.shmctl(id, 2, buf))
print('set', libc.shmctl(id, 1, buf), ctypes.get_errno())
print('bad set', libc.shmctl(id, 1, ctypes.c_void_p(8)), ctypes.get_errno())
pid = os.fork()
if pid == 0:
    p = libc.shmat(id, None, 0)
    print('read', ctypes.c_uint32.from_address(p + 4).value == 2654435761, flush=True)
    ctypes.memset(p, 0, 1)
    os._exit(0)
_, st = os.waitpid(pid, 0)
print('write', 'SIGSEGV' if os.WIFSIGNALED(st) and os.WTERMSIG(st) == 11 else st)
print('rmid', libc.shmctl(id, 0, None))
print('after', libc.shmget(0x7ab1e, 0, 0), ctypes.get_errno())
`;
    const r = appshot(home, ['template', 'clone', 'ro', '--', 'python3', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['get True', 'stat 0', 'set -1 1', 'bad set -1 14', 'read True', 'write SIGSEGV', 'rmid 0', 'after -1 2']);
    expect(kernelObjects('shm').has(srid)).toBe(true); // the other clones' segment stays
    // Removed from outside appshot: the template refuses to clone, and says what to do.
    spawnSync('ipcrm', ['-m', String(srid)]);
    const gone = appshot(home, ['template', 'clone', 'ro', '--', 'true']);
    expect(gone.code).toBe(5);
    expect(gone.stderr).toMatch(new RegExp(`template 'ro': its shared segment ${srid} \\(virtual \\d+\\) is gone from the kernel .* make it again`));
    expect(appshot(home, ['template', 'rm', 'ro']).code).toBe(0);
    expect(kernelObjects('shm').has(srid)).toBe(false);
  });

  it('IPC_RMID in a clone: the key goes at once, the ID lives on until the clone\'s last detach, as natively; the kernel keeps it for the others', async () => {
    const home = makeHome();
    const { snap } = await warmSnapshot(home);
    const go = join(home, 'go');
    const probe = ['get', '0x7ab1e', '0', '-', 'stat', 'listed', 'attach', 'r', 'stat', 'listed', 'rmid', 'stat', 'listed',
      'get', '0x7ab1e', '0', '-', 'waitfile', go, 'detach', 'stat', 'listed'];
    // IDs and PIDs differ between the runs; every other field must not.
    const comparable = (out: string) => out.replace(/^id \d+$/m, 'id').replace(/ cpid \d+ lpid \d+/g, '');
    // Natively: a segment like the template's (its key, size and mode) that the probe alone attaches.
    expect(runNative(['get', '0x7ab1e', String(TABLE_BYTES), 'c', 'setmode', '0444'], SHMTOOL).stdout).toMatch(/^id \d+\nok 0\n$/);
    writeFileSync(go, '');
    const native = comparable(runNative(probe, SHMTOOL).stdout);
    expect(native).toBe(['id', 'ok 0', 'key 0x0007ab1e size 1048576 nattch 0 mode 444 removed 0', 'listed key 0x0007ab1e perms 444 nattch 0',
      'attached ok', 'ok 0', 'key 0x0007ab1e size 1048576 nattch 1 mode 444 removed 0', 'listed key 0x0007ab1e perms 444 nattch 1',
      'ok 0', 'ok 0', 'key 0x00000000 size 1048576 nattch 1 mode 444 removed 1', 'listed key 0x00000000 perms 1444 nattch 1',
      'err ENOENT', 'ok 0', 'err EINVAL', 'not listed', ''].join('\n'));
    rmSync(go);

    expect(appshot(home, ['template', 'create', 'rm', '--from', snap]).code).toBe(0);
    const srid: number = JSON.parse(appshot(home, ['template', 'inspect', 'rm', '--json']).stdout).shared[0].srid;
    // A process outside the clone holds the segment too, as the other clones would.
    const holder = spawn(SHMTOOL, ['use', String(srid), 'attach', 'r', 'waitfile', go], { stdio: ['ignore', 'pipe', 'inherit'] });
    const holderGone = new Promise((resolve) => holder.on('exit', resolve));
    let held = '';
    holder.stdout!.on('data', (d) => (held += d));
    try {
      await waitFor(() => held, /attached ok/);
      const clone = appshotAsync(home, ['template', 'clone', 'rm', '--', SHMTOOL, ...probe]);
      await waitFor(clone.out, /err ENOENT/);
      // The clone still has the removed segment attached: its row stays, marked
      // removed; the tables are consistent, and gc leaves it.
      expect(tablesJson(home, ['--aid', 'rm-1', '--type', 'shm'])).toEqual([
        expect.objectContaining({ system: srid, creator: CREATOR_TEMPLATE, key: 0 }),
      ]);
      const verify = appshot(home, ['tables', '--verify']);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      expect(appshot(home, ['gc']).stdout).toBe('nothing to clean up\n');
      expect(tablesJson(home, ['--aid', 'rm-1', '--type', 'shm'])).toHaveLength(1);
      writeFileSync(go, '');
      expect((await clone.done).code).toBe(0);
      expect(comparable(clone.out())).toBe(native);
      // A process of a clone that exits with the removed segment attached
      // detaches without a shmdt for the shim to see: gc drops the row once
      // no process of the clone has it attached.
      const exiting = appshotAsync(home, ['template', 'clone', 'rm', '--', 'sh', '-c',
        `${SHMTOOL} get 0x7ab1e 0 - attach r rmid >/dev/null && echo gone && exec sleep 100000`]);
      await waitFor(exiting.out, /gone/);
      expect(tablesJson(home, ['--aid', 'rm-1', '--type', 'shm'])).toHaveLength(1);
      expect(appshot(home, ['gc']).stdout).toBe("dropped the rows of 1 removed shared memory segment(s) of running application 'rm-1' whose last detach has come\n");
      expect(tablesJson(home, ['--aid', 'rm-1', '--type', 'shm'])).toEqual([]);
      exiting.child.kill('SIGTERM');
      await exiting.done;
    } finally {
      writeFileSync(go, '');
      holder.kill();
    }
    await holderGone;
    expect(kernelObjects('shm').has(srid)).toBe(true); // the template's, for the next clones
    expect(appshot(home, ['template', 'rm', 'rm']).code).toBe(0);
    expect(kernelObjects('shm').has(srid)).toBe(false);
  });
});
