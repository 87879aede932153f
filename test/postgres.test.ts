import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../ts/paths.js';
import { freePort, waitFor } from './helpers.js';

/**
 * PostgreSQL 15 behind --publish, with initdb's default pg_hba.conf (trust
 * for 127.0.0.1/32 and ::1/128 only): a server that listens on 127.0.0.1
 * must see its clients as 127.0.0.1, or it refuses them. It runs as the
 * postgres user (it refuses root), and so does appshot, in a home of its
 * own outside the run's (which only root may enter); both go at the end.
 */
const BIN = '/usr/lib/postgresql/15/bin';
const SQL = 'select 1; select inet_server_port(), inet_client_addr(), inet_server_addr()';

function userIds(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim() || NaN);
  const [uid, gid] = [id('-u'), id('-g')];
  if (!(uid > 0)) throw new Error(`no user ${name}: scripts/system-deps.sh installs postgresql, which makes it`);
  return { uid, gid };
}



let dir: string;
let pg: { uid: number; gid: number };

beforeAll(() => {
  pg = userIds('postgres');
  dir = mkdtempSync(join(tmpdir(), 'appshot-pg-'));
  chownSync(dir, pg.uid, pg.gid);
  const r = spawnSync(join(BIN, 'initdb'), ['-D', join(dir, 'data'), '-U', 'postgres', '--no-sync'], { uid: pg.uid, gid: pg.gid, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`initdb failed: ${r.stderr}`);
  mkdirSync(join(dir, 'home'), { mode: 0o700 });
  chmodSync(join(dir, 'home'), 0o700);
  chownSync(join(dir, 'home'), pg.uid, pg.gid);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** postgres on 127.0.0.1:port, under appshot with flags when given. */
async function startPostgres(port: number, flags: string[] | null): Promise<{ child: ChildProcess; log: () => string; done: Promise<void> }> {
  const server = [join(BIN, 'postgres'), '-D', join(dir, 'data'), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-p', String(port)];
  const [cmd, ...args] = flags ? [process.execPath, CLI_PATH, 'run', ...flags, '--', ...server] : server;
  const env = { ...process.env, APPSHOT_HOME: join(dir, 'home') };
  delete env.LD_PRELOAD;
  delete env.APPSHOT_AID;
  const child = spawn(cmd, args, { uid: pg.uid, gid: pg.gid, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const done = new Promise<void>((r) => child.on('close', () => r()));
  await waitFor(() => log, /ready to accept connections|FATAL|appshot:/);
  return { child, log: () => log, done };
}

/** Ends a postgres started under appshot: SIGTERM, as an operator would;
 * if a process of it outlives that (a postmaster that died leaves its
 * children), every process of the application is killed, so that a failing
 * test leaves nothing running. */
async function stopPostgres(app: { child: ChildProcess; done: Promise<void> }, flags: string[]): Promise<void> {
  app.child.kill('SIGTERM');
  const ended = await Promise.race([app.done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
  if (ended) return;
  const env = { ...process.env, APPSHOT_HOME: join(dir, 'home') };
  spawnSync(process.execPath, [CLI_PATH, 'kill', aidOf(flags)], { uid: pg.uid, gid: pg.gid, env });
  await app.done;
}

/** The AID each mode's application runs under. */
const aidOf = (flags: string[]) => (flags.includes('--no-identity') ? 'pg-remapped' : 'pg-identity');

function psql(port: number): { stdout: string; stderr: string } {
  const r = spawnSync('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-Atc', SQL], { encoding: 'utf8', timeout: 15_000 });
  return { stdout: r.stdout, stderr: r.stderr };
}

describe('PostgreSQL behind --publish with its default pg_hba.conf', () => {
  it('psql at the public port runs select 1 and sees what it sees natively (the virtual port, client 127.0.0.1), identity and remapped', async () => {
    const vport = await freePort();
    const native = await startPostgres(vport, null);
    const want = psql(vport);
    native.child.kill('SIGTERM');
    await native.done;
    expect(want.stderr).toBe('');
    expect(want.stdout).toBe(`1\n${vport}|127.0.0.1|127.0.0.1\n`);
    for (const flags of [[], ['--no-identity']]) {
      const pub = await freePort();
      const app = await startPostgres(vport, ['--aid', aidOf(flags), ...flags, '--publish', `${pub}:${vport}`]);
      try {
        expect(app.log()).toContain('ready to accept connections');
        const got = psql(pub);
        expect(got.stderr).toBe('');
        expect(got.stdout).toBe(want.stdout);
      } finally {
        await stopPostgres(app, flags);
      }
      expect(app.log()).not.toMatch(/appshot:|no pg_hba.conf entry/);
    }
  });
});
