/**
 * Processes that changed their user, snapshotted whole (`appshot snapshot
 * --stop`) and restored (`appshot restore`): each comes back as the user it
 * was, never as the restorer's (root), and lives on, translated (the shim of
 * a process that became nobody opens the tables through the application's
 * descriptors). python3 with a fork child that became nobody and a thread of
 * its own uid; Apache prefork started as root with `User www-data`. Identity
 * and --no-identity modes. And the refusal: nobody asked to restore root's
 * processes.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../ts/paths.js';
import { APACHE, MODES, appshot, appshotAsync, freePort, lineFrom, makeHome, waitFor, who, writeApacheConf } from './helpers.js';

const DROPUSER = join(import.meta.dirname, 'fixtures', 'dropuser.py');
const PYTHON = '/usr/bin/python3';
const NOBODY = 65534;
const WWW_DATA = 33;

/** Folders others (www-data, nobody) read: under the system's temporary directory. */
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function openDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'appshot-creds-'));
  dirs.push(dir);
  chmodSync(dir, 0o755);
  return dir;
}

/** Real, effective, saved and fs uid of each thread of a process, and the process's gids, groups and effective capabilities. */
function creds(spid: number) {
  const status = (task: string) => readFileSync(`/proc/${spid}/task/${task}/status`, 'utf8');
  const field = (text: string, name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text)![1].trim();
  const main = status(String(spid));
  return {
    uids: readdirSync(`/proc/${spid}/task`).map((t) => field(status(t), 'Uid').split(/\s+/).map(Number)),
    gid: field(main, 'Gid').split(/\s+/).map(Number),
    groups: field(main, 'Groups'),
    capEff: field(main, 'CapEff'),
  };
}

/** [vpid, spid] of each process of an application, by vpid. */
function processes(home: string, aid: string): [number, number][] {
  const r = appshot(home, ['ps', '--aid', aid, '--json']);
  if (r.code !== 0) throw new Error(`ps of ${aid}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { vpid: number; spid: number }[]).map((p) => [p.vpid, p.spid] as [number, number]).sort((a, b) => a[0] - b[0]);
}

/** The system port behind an application's virtual TCP port. */
function systemPort(home: string, aid: string, port: number): number {
  const r = appshot(home, ['tables', '--json', '--aid', aid, '--type', 'port']);
  const row = (JSON.parse(r.stdout) as { virtual: number; system: number }[]).find((x) => x.virtual === port);
  if (!row) throw new Error(`no port row ${port} for ${aid}: ${r.stdout} ${r.stderr}`);
  return row.system;
}

/** Snapshot --stop of aid: the file, once its harness ended with SIGKILL's status. */
async function snapshotStop(home: string, aid: string, harness: ReturnType<typeof appshotAsync>): Promise<string> {
  const file = join(home, `${aid}.snap`);
  const s = appshot(home, ['snapshot', aid, '-o', file, '--stop']);
  expect(s.stderr).toBe('');
  expect(s.code).toBe(0);
  expect((await harness.done).code).toBe(137);
  return file;
}

/** Resolves once probe returns something, trying again for 20 s. */
async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = Date.now() + 20_000;
  for (;;) {
    let v: T | undefined;
    try {
      v = await probe();
    } catch {
      v = undefined;
    }
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** python3 dropuser.py under aid: its harness, once the child listens as nobody and the thread changed its uid. */
async function dropuser(home: string, aid: string, flags: readonly string[], port: number) {
  const h = appshotAsync(home, ['run', ...flags, '--aid', aid, '--', PYTHON, DROPUSER, String(port)]);
  await waitFor(h.out, /child listening[^]*thread uid 1|thread uid 1[^]*child listening/);
  await waitFor(h.out, /child tick 2/);
  return h;
}

describe.each(MODES)('a process that changed its user, restored, %s', (mode, flags) => {
  it('python3: the fork child that became nobody comes back as nobody (its parent root, its thread uid 1), ticks on and answers, binding a port through the tables', async () => {
    const home = makeHome();
    const port = await freePort();
    const h = await dropuser(home, 'du', flags, port);
    const childVpid = Number((await waitFor(h.out, /^child (\d+)$/m))[1]);
    const vpids = processes(home, 'du').map((p) => p[0]);
    expect(vpids).toHaveLength(2);
    expect(vpids).toContain(childVpid);
    const file = await snapshotStop(home, 'du', h);
    const b = appshotAsync(home, ['restore', file, '--aid', 'du-b']);
    // The child ticks on (its stdout, a pipe outside, is the restore's now).
    await waitFor(b.out, /child tick \d+[^]*child tick \d+/);
    const both = processes(home, 'du-b');
    expect(both.map((p) => p[0])).toEqual(vpids);
    const child = both.find((p) => p[0] === childVpid)![1];
    const parent = both.find((p) => p[0] !== childVpid)![1];
    const c = creds(child);
    expect(c.uids).toEqual([[NOBODY, NOBODY, NOBODY, NOBODY]]);
    expect(c.gid).toEqual([NOBODY, NOBODY, NOBODY, NOBODY]);
    expect(c.groups).toBe('');
    expect(c.capEff).toBe('0000000000000000');
    const p = creds(parent);
    expect(p.uids.sort()).toEqual([[0, 0, 0, 0], [1, 1, 1, 1]]);
    expect(p.gid).toEqual([0, 0, 0, 0]);
    // It answers at its virtual port, as nobody, and binds a fresh port
    // (a write of the tables) on each connection.
    const line = await until('the child answering', async () => (await lineFrom(systemPort(home, 'du-b', port))) || undefined);
    expect(line).toMatch(new RegExp(`^uid ${NOBODY} euid ${NOBODY} pid ${childVpid} fresh \\d+\\n$`));
    expect(await lineFrom(systemPort(home, 'du-b', port))).toMatch(/^uid 65534 /);
    expect(processes(home, 'du-b')).toEqual(both);
    expect(b.err()).not.toMatch(/appshot: (?!restored)/);
    appshot(home, ['kill', 'du-b']);
    await b.done;
  });

  it('Apache prefork started as root with User www-data: its workers come back as www-data, take the accept mutex and answer, none dies', async () => {
    const home = makeHome();
    const port = await freePort(2);
    const dir = apacheDir(port);
    const h = appshotAsync(home, ['run', ...flags, '--aid', 'ap', '--', APACHE, '-f', join(dir, 'httpd.conf'), '-DFOREGROUND']);
    await until('apache and its 2 workers', () => (processes(home, 'ap').length === 3 ? true : undefined));
    expect(await who(systemPort(home, 'ap', port))).toBe('hello\n');
    const vpids = processes(home, 'ap').map((p) => p[0]);
    const file = await snapshotStop(home, 'ap', h);
    const b = appshotAsync(home, ['restore', file, '--aid', 'ap-b']);
    await until('the restored processes', () => (processes(home, 'ap-b').length === 3 ? true : undefined));
    const restored = processes(home, 'ap-b');
    expect(restored.map((p) => p[0])).toEqual(vpids);
    const uids = restored.map(([, spid]) => creds(spid).uids[0]);
    expect(uids.filter((u) => u[0] === 0)).toEqual([[0, 0, 0, 0]]);
    expect(uids.filter((u) => u[0] !== 0)).toEqual([
      [WWW_DATA, WWW_DATA, WWW_DATA, WWW_DATA],
      [WWW_DATA, WWW_DATA, WWW_DATA, WWW_DATA],
    ]);
    for (const i of [0, 1, 2, 3]) expect(await who(systemPort(home, 'ap-b', port + (i % 2)))).toBe('hello\n');
    // The same processes answered: no worker died and none was made anew.
    expect(processes(home, 'ap-b')).toEqual(restored);
    expect(readFileSync(join(dir, 'error.log'), 'utf8')).not.toMatch(/appshot:|exit signal|AH00023|AH00024|emerg/);
    appshot(home, ['kill', 'ap-b']);
    await b.done;
  });
});

describe('a restore that cannot give the saved users', () => {
  it('nobody asked to restore processes of root is refused before anything runs, naming the process and the user (exit 3), and nothing is left', async () => {
    const home = makeHome();
    const port = await freePort();
    const h = await dropuser(home, 'du', [], port);
    const open = openDir();
    const file = join(open, 'du.snap');
    copyFileSync(await snapshotStop(home, 'du', h), file);
    chmodSync(file, 0o644);
    const nobodyHome = join(open, 'home');
    mkdirSync(nobodyHome, { mode: 0o700 });
    chownSync(nobodyHome, NOBODY, NOBODY);
    const asNobody = (args: string[]) => {
      const env = { ...process.env, APPSHOT_HOME: nobodyHome };
      delete env.APPSHOT_AID;
      delete env.LD_PRELOAD;
      return spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, CLI_PATH, ...args], { env, encoding: 'utf8', timeout: 50_000 });
    };
    const r = asNobody(['restore', file, '--aid', 'du-n']);
    expect(r.stderr).toMatch(/appshot: cannot restore process \d+ \(python3\) from .*du\.snap: it runs as user root \(uid 0, gid 0\), which this restorer \(user nobody, uid 65534\) cannot become; restore it as root; nothing was restored/);
    expect(r.status).toBe(3);
    expect(JSON.parse(asNobody(['ps', '--json']).stdout)).toEqual([]);
    expect(JSON.parse(asNobody(['tables', '--json']).stdout)).toEqual([]);
  });
});

/** Apache's folder, read by www-data: two listeners (port, port + 1), so
 * the workers serialize accept() with a SysV semaphore root made. */
function apacheDir(port: number): string {
  const dir = openDir();
  writeApacheConf(dir, port, 'hello');
  return dir;
}
