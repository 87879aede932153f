/**
 * What the tests of the published pool steered in the kernel share
 * (test/poolsteer*.test.ts): instances, their processes and listeners, the
 * pool's status rows.
 */
import { mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { appshot, appshotAsync, waitFor } from './helpers.js';

/** APPSHOT_POOL_STEER cleared: the default, kernel steering, even in a run
 * that forces the hand-off for the other pool tests. */
export const KERNEL = { APPSHOT_POOL_STEER: '' };

export type Harness = ReturnType<typeof appshotAsync>;

/** An application serving who.txt (its own name) with python3 -m
 * http.server on virtual port 8080, published at pub, steered by the kernel. */
export async function instance(home: string, name: string, pub: number, extra: string[] = [], says = name): Promise<Harness> {
  const dir = join(home, says);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'who.txt'), says);
  const h = appshotAsync(home, ['run', '--aid', name, '--publish', `${pub}:8080`, ...extra, '--', 'python3', '-u', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', dir], KERNEL);
  await waitFor(h.out, /Serving HTTP/);
  return h;
}

export function serverSpid(home: string, aid: string): number {
  const ps = JSON.parse(appshot(home, ['ps', '--aid', aid, '--json']).stdout) as { spid: number; command: string }[];
  const row = ps.find((p) => p.command.includes('http.server'));
  if (!row) throw new Error(`no http.server process in ${aid}: ${JSON.stringify(ps)}`);
  return row.spid;
}

export async function stop(harnesses: Harness[]): Promise<void> {
  for (const h of harnesses) h.child.kill('SIGTERM');
  await Promise.all(harnesses.map((h) => h.done));
}

/** The TCP ports process pid listens on through its own descriptors (its
 * sockets' inodes against its network namespace's table of listeners). */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
    if (m) inodes.add(m[1]);
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6'])
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9])) ports.push(parseInt(f[1].split(':').pop()!, 16));
    }
  return ports;
}

export interface PubRow {
  pool: { steer: string; instances: { aid: string; handed: number; unacked: number }[] };
}

/** The error code of a TCP connection to host:port, or 'connected'. */
export function connectError(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.on('connect', () => (s.destroy(), resolve('connected')));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
  });
}

export const tally = (names: string[]) => names.reduce<Record<string, number>>((m, n) => ({ ...m, [n]: (m[n] ?? 0) + 1 }), {});

