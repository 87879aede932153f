import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshotAsync, freePort, makeHome, tablesJson, testRoot, waitFor } from './helpers.js';

// The descriptor part of the whole-process snapshot (native/checkpoint/fds*.c)
// on its own: fdsdriver stops live processes (fdsprog setup SCENARIO) with
// ptrace, captures their descriptors, ends them (or, --keep, lets them run
// on), makes the descriptors again in one child per process and execs
// `fdsprog check SCENARIO` there, which reports what it sees: "INDEX name value".

const FDSPROG = builtProgram('fdsprog');
const DRIVER = builtProgram('fdsdriver');

const started: ChildProcess[] = [];
const outsiders: number[] = [];

afterEach(() => {
  for (const p of started.splice(0)) p.kill('SIGKILL');
  for (const pid of outsiders.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

/** Another user, as whom the capture must work too (a process may trace
 * its own user's processes); as a user already, that user. */
const asUser = process.getuid!() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];

/** A folder every user may write. */
function sharedDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'appshot-fds-'));
  chmodSync(dir, 0o777);
  shared.push(dir);
  return dir;
}
const shared: string[] = [];
afterAll(() => {
  for (const dir of shared) rmSync(dir, { recursive: true, force: true });
});

/** Starts `fdsprog setup` and waits for its "ready PID..." line. */
async function setup(scenario: string, dir: string, port = 0, run?: string[], as: string[] = []) {
  const args = ['setup', scenario, dir, String(port)];
  let out = '';
  let p: ChildProcess;
  let harness: ReturnType<typeof appshotAsync> | undefined;
  if (run) {
    harness = appshotAsync(run[0], [...run.slice(1), '--', FDSPROG, ...args]);
    p = harness.child;
  } else {
    const cmd = [...as, FDSPROG, ...args];
    p = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout!.on('data', (d) => (out += d));
    started.push(p);
  }
  const read = () => (harness ? harness.out() : out);
  const m = await waitFor(read, /ready ([\d ]+)(?:outsider (\d+))?\n/);
  const pids = m[1].trim().split(' ').map(Number);
  // Under appshot run the pids are virtual; the harness ends them all.
  if (m[2] && !run) outsiders.push(Number(m[2]));
  return { pids, proc: p, harness };
}

/** fdsdriver over the processes; the checkers' lines as a map. */
function drive(pids: number[], scenario: string, dir: string, port = 0, extra: string[] = [], as: string[] = []) {
  const json = join(dir, 'capture.json');
  const cmd = [...as, DRIVER, ...extra, '--json', json, '--pids', pids.join(','), '--', FDSPROG, 'check', scenario, dir, String(port)];
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout: 30_000 });
  const seen = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = line.match(/^(\d+) (\S+) ?(.*)$/);
    if (m) seen.set(`${m[1]} ${m[2]}`, m[3]);
  }
  let kinds: string[] = [];
  try {
    kinds = JSON.parse(readFileSync(json, 'utf8')).files.ofds.map((o: { kind: string }) => o.kind);
  } catch {
    // refused: nothing written
  }
  return { code: r.status, stderr: r.stderr, seen, kinds };
}

function dirFor(): string {
  return mkdtempSync(join(testRoot(), 'fds-'));
}

describe('descriptors captured from stopped processes and made again', () => {
  it('regular files at their offsets (a dup and a fork child share one), directories, /dev/null, close-on-exec, O_APPEND, and pipes with their buffered bytes', async () => {
    const dir = dirFor();
    const { pids } = await setup('files', dir);
    const r = drive(pids, 'files', dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(Object.fromEntries(r.seen)).toEqual({
      '0 fd3': 'data',
      '0 off3': '5', // the saved offset
      '0 read4': '1',
      '0 off3after': '6', // 3 and 4 are one open file description
      '0 off5': '2', // another one, on the same file
      '0 flags5': 'r',
      '0 fd6': 'EBADF', // close-on-exec: gone after the checker's exec
      '0 fd7': dir,
      '0 fd8': 'EBADF', // closed in the parent before the snapshot
      '0 fd9': 'w',
      '0 pipe10': 'child-bytes', // written by the child, buffered in the pipe
      '0 flags12': 'r+nonblock',
      '0 pipe12': 'self',
      '0 flags14': 'w+append',
      '0 fd15': '/dev/null',
      '0 fd16': 'fifo', // a FIFO by its name, with its bytes
      '0 fifo16': 'fifo-bytes',
      '0 flags17': 'w',
      '0 pipe18': 'from-outside', // its writer was outside the application:
      '0 pipe18-again': 'EOF', // the bytes, then end of file
      '0 fd19': '/dev/urandom',
      '0 fd20': 'O_PATH', // an O_PATH descriptor of the FIFO: by path, opening nothing
      '1 pipe8': 'hello-from-parent', // written by the parent, buffered
      '1 fd9': 'EBADF',
      '1 fd11': 'w',
      '1 off3': '6 after go', // the parent's read moved the child's offset too
    });
    // stdout, a pipe to this test (outside the application): the restorer's own.
    expect(r.kinds).toContain('inherit');
  });

  it('eventfd count and semaphore mode, timerfd time left, interval and unread expirations, signalfd mask, epoll interest lists', async () => {
    const dir = dirFor();
    const { pids } = await setup('anon', dir);
    const r = drive(pids, 'anon', dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(Object.fromEntries(r.seen)).toEqual({
      // ready: the pipe with a byte (9, edge-triggered), the entry registered
      // as 13 (its file lives on as 14), the two files registered as 16
      // (a1, b2), the eventfd (3); not the empty pipe (11)
      '0 epoll': '9,d,a1,b2,1122334455667788',
      '0 epoll-et-again': '0',
      '0 eventfd3': '5',
      '0 flags3': 'rw+nonblock',
      '0 semaphore4': '1,1,1,EAGAIN',
      '0 timer5': 'armed interval 7',
      '0 timer15': 'armed flags 03', // a wall-clock date, cancelled if the clock is set
      '0 flags5': 'rw+nonblock',
      '0 ticks6': '1',
      '0 signalfd7': '10',
      '0 flags7': 'rw+nonblock',
      '0 del13': 'ok', // registered under the number it had
      '0 del14': 'ENOENT',
      '1 fd8': 'anon_inode:[eventpoll]', // the child shares it; its list came back once
    });
  });

  it('a listener at its port, a bound UDP socket, Unix socket pairs with their queues, a TCP connection inside the application, and one to the outside as a reset', async () => {
    const dir = dirFor();
    const port = await freePort();
    const { pids } = await setup('sockets', dir, port);
    const r = drive(pids, 'sockets', dir, port);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(Object.fromEntries(r.seen)).toEqual({
      '0 port3': String(port), // no tables: the same port
      '0 accept3': 'ok',
      '0 port4': String(port),
      '0 udp4': 'dgram',
      '0 unix5': 'to-parent',
      '0 dgram7': 'm1,m2,EAGAIN', // two datagrams, each whole
      '0 tcp9': 'ECONNRESET', // the peer outside the application
      '0 tcp9-again': 'EOF',
      '0 tcp11': 'tcp-hello',
      '0 port11': "the listener's", // accepted again through the restored listener
      '1 unix6': 'to-child',
      '1 tcp10': 'tcp-back',
      '1 peer10': String(port),
      '1 unix14': 'ping', // the other end of 13
      '0 accept12': 'ok', // the Unix listener at its path again
      '0 mode12': '640',
      '0 unix13': 'via-listener', // a connection it accepted, both ends inside
    });
    expect(r.kinds.sort()).toEqual(
      expect.arrayContaining(['tcp-listen', 'udp', 'unix', 'unix-listen', 'tcp-reset', 'tcp-pair']),
    );
  });

  it('an epoll with 2000 entries (a busy server\'s) comes back whole', async () => {
    const dir = dirFor();
    const n = 2000; // the count is passed where the port goes
    const { pids } = await setup('bigepoll', dir, n);
    const r = drive(pids, 'bigepoll', dir, n);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // the even entries are ready: 1000 of them, their data summing to 0 + 2 + ... + 1998
    expect(r.seen.get('0 ready')).toBe(`1000 sum ${999 * 1000}`);
  });

  it('a terminal comes back as the restorer\'s terminal, or /dev/null when the restorer has none', async () => {
    const dir = dirFor();
    const first = await setup('tty', dir);
    const none = drive(first.pids, 'tty', dir);
    expect(none.code).toBe(0);
    expect(none.seen.get('0 fd3')).toBe('/dev/null');
    expect(none.seen.get('0 flags3')).toBe('rw');
    expect(none.kinds).toContain('tty');
    // Under script(1) the restorer's stdio is a terminal.
    const second = await setup('tty', dir);
    const cmd = [DRIVER, '--pids', String(second.pids[0]), '--', FDSPROG, 'check', 'tty', dir].join(' ');
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.replace(/\r/g, '')).toContain("0 fd3 the restorer's terminal\n0 flags3 rw\n");
  });

  it('refuses a descriptor of a kind it cannot capture, naming the process, the descriptor and its kind, and leaves the process running', async () => {
    const dir = dirFor();
    const { pids } = await setup('refuse', dir);
    const r = drive(pids, 'refuse', dir);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(
      `appshot: process ${pids[0]} (fdsprog): descriptor 3 is of kind inotify, which a snapshot cannot capture; close it before the snapshot, or use --ipc-only\n`,
    );
    // Running, no longer traced, its descriptor as it was.
    const status = readFileSync(`/proc/${pids[0]}/status`, 'utf8');
    expect(status).toMatch(/TracerPid:\s+0\n/);
    expect(status).not.toMatch(/State:\s+[tTZ]/);
    expect(readlinkSync(`/proc/${pids[0]}/fd/3`)).toBe('anon_inode:inotify');
  });

  it('refuses a file deleted while open, naming it', async () => {
    const dir = dirFor();
    const { pids } = await setup('deleted', dir);
    const r = drive(pids, 'deleted', dir);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(
      `appshot: process ${pids[0]} (fdsprog): descriptor 3 is a file that no longer has a name (${dir}/gone (deleted)): a restore could not open it again; close it before the snapshot, or use --ipc-only\n`,
    );
    expect(readFileSync(`/proc/${pids[0]}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
  });
});

describe(`as ${asUser.length ? 'another user (uid 65534)' : 'this user'}, without privileges`, () => {
  it.each([
    ['files', { '0 off3after': '6', '1 off3': '6 after go', '0 pipe10': 'child-bytes', '1 pipe8': 'hello-from-parent', '0 fifo16': 'fifo-bytes', '0 pipe18-again': 'EOF' }],
    ['anon', { '0 epoll': '9,d,a1,b2,1122334455667788', '0 eventfd3': '5', '0 ticks6': '1', '0 signalfd7': '10', '0 del13': 'ok' }],
    ['sockets', { '0 accept3': 'ok', '0 unix5': 'to-parent', '0 dgram7': 'm1,m2,EAGAIN', '0 tcp9': 'ECONNRESET', '0 tcp11': 'tcp-hello', '0 accept12': 'ok', '1 unix6': 'to-child' }],
  ])('%s come back the same', async (scenario, want) => {
    const dir = sharedDir();
    const port = await freePort();
    const { pids } = await setup(scenario, dir, port, undefined, asUser);
    const r = drive(pids, scenario, dir, port, [], asUser);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(Object.fromEntries(r.seen)).toMatchObject(want);
  });
});

describe.each(MODES)('listeners under the shim, %s', (mode, flags) => {
  it('come back at the same virtual port: its row in the restoring application names the system port they listen on, another than the original\'s, which still runs', async () => {
    const home = makeHome();
    const dir = dirFor();
    const port = await freePort();
    const src = `fds-src-${mode}`;
    const dst = `fds-dst-${mode}`;
    const app = await setup('netsockets', dir, port, [home, 'run', '--aid', src, ...flags]);
    const other = appshotAsync(home, ['run', '--aid', dst, ...flags, '--', 'sleep', '600']);
    await waitFor(() => JSON.stringify(tablesJson(home, ['--aid', dst, '--type', 'pid'])), /system/);
    // The pids printed are virtual: the kernel's from the pid rows.
    const pidRows = tablesJson(home, ['--aid', src, '--type', 'pid']);
    const spids = app.pids.map((v) => pidRows.find((row) => row.virtual === v)!.system);
    const srcPorts = tablesJson(home, ['--aid', src, '--type', 'port']);
    const r = drive(spids, 'netsockets', dir, port, ['--home', home, '--aid', src, '--restore-aid', dst, '--keep']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const sport = Number(r.seen.get('0 port3'));
    expect(r.seen.get('0 accept3')).toBe('ok');
    expect(r.seen.get('0 udp4')).toBe('dgram');
    expect(r.seen.get('0 tcp11')).toBe('tcp-hello');
    expect(r.seen.get('0 port11')).toBe("the listener's");
    expect(r.seen.get('1 peer10')).toBe(String(sport));
    expect(r.kinds).toContain('home'); // the shim's own files, by their name in the home
    const rows = tablesJson(home, ['--aid', dst, '--type', 'port']);
    expect(rows).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ virtual: port, system: sport, proto: 'tcp' }),
        expect.objectContaining({ virtual: port, system: Number(r.seen.get('0 port4')), proto: 'udp' }),
      ]),
    );
    // The original keeps its own system port; in identity mode that is the
    // virtual one, so the restored copy had to take one from the range.
    const srcTcp = srcPorts.find((row) => (row as unknown as { proto: string }).proto === 'tcp')!;
    expect(sport).not.toBe(srcTcp.system);
    expect(sport).toBeGreaterThanOrEqual(20000);
    expect(sport).toBeLessThanOrEqual(29999);
    app.harness!.child.kill('SIGTERM');
    other.child.kill('SIGTERM');
  });
});

describe.each(MODES)('a listener restored once its original has ended, %s', (mode, flags) => {
  it(mode === 'identity' ? 'gets its own port back: virtual and system port are one again' : 'gets a port of the range, not its own', async () => {
    const home = makeHome();
    const dir = dirFor();
    const port = await freePort();
    const src = `fds-gone-${mode}`;
    const dst = `fds-back-${mode}`;
    const app = await setup('netsockets', dir, port, [home, 'run', '--aid', src, ...flags]);
    const pidRows = tablesJson(home, ['--aid', src, '--type', 'pid']);
    const spids = app.pids.map((v) => pidRows.find((row) => row.virtual === v)!.system);
    const image = join(dir, 'capture.json');
    const cap = spawnSync(DRIVER, ['--home', home, '--aid', src, '--capture-only', '--json', image, '--pids', spids.join(',')], { encoding: 'utf8', timeout: 30_000 });
    expect(cap.stderr).toBe('');
    expect(cap.status).toBe(0);
    await app.harness!.done; // the original has ended and its ports are free
    expect(tablesJson(home, ['--aid', src, '--type', 'port'])).toEqual([]);
    const other = appshotAsync(home, ['run', '--aid', dst, ...flags, '--', 'sleep', '600']);
    await waitFor(() => JSON.stringify(tablesJson(home, ['--aid', dst, '--type', 'pid'])), /system/);
    const cmd = [DRIVER, '--home', home, '--aid', dst, '--from', image, '--', FDSPROG, 'check', 'netsockets', dir, String(port)];
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const sport = Number(r.stdout.match(/^0 port3 (\d+)$/m)![1]);
    expect(r.stdout).toContain('0 accept3 ok\n');
    if (mode === 'identity') expect(sport).toBe(port);
    else expect(sport).not.toBe(port);
    expect(tablesJson(home, ['--aid', dst, '--type', 'port'])).toEqual(
      expect.arrayContaining([expect.objectContaining({ virtual: port, system: sport, proto: 'tcp' })]),
    );
    other.child.kill('SIGTERM');
  });
});
