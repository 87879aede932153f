import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MSGTOOL, SEMTOOL, SHMTOOL, appshot, appshotAsync, lines, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

/** The objects `ipcs` prints, as "shm 0x005eed21 268435456" lines. */
function ipcsObjects(out: string): string[] {
  const found: string[] = [];
  let family = '';
  for (const line of out.split('\n')) {
    if (line.includes('Message Queues')) family = 'msg';
    else if (line.includes('Shared Memory Segments')) family = 'shm';
    else if (line.includes('Semaphore Arrays')) family = 'sem';
    const m = line.match(/^(0x[0-9a-f]{8})\s+(\d+)/);
    if (m) found.push(`${family} ${m[1]} ${m[2]}`);
  }
  return found.sort();
}

/**
 * Application 'me' makes one object of each family under key 0x5eed21,
 * application 'other' its own under the same key, and a program outside
 * appshot one more; then, with all of them alive, 'me' runs inside, a
 * shell command, and the test reads the kernel's listings at that moment.
 */
async function withThreeHolders(inside: string) {
  const home = makeHome();
  const go = join(home, 'go');
  const native = runNative(['get', '0x5eed29', '100', 'c'], SHMTOOL);
  const nativeId = lines(native.stdout)[0].split(' ')[1];
  const make = `${SEMTOOL} get 0x5eed21 2 c >/dev/null && ${SHMTOOL} get 0x5eed21 8192 c >/dev/null && ${MSGTOOL} get 0x5eed21 c send 1 hello - >/dev/null && echo held`;
  const other = appshotAsync(home, ['run', '--aid', 'other', '--', 'sh', '-c', `${make} && exec sleep 100000`]);
  try {
    await waitFor(other.out, /held/);
    const me = appshotAsync(home, ['run', '--aid', 'me', '--no-identity', '--', 'sh', '-c', `${make} && while [ ! -e ${go} ]; do sleep 0.01; done; ${inside}`]);
    await waitFor(me.out, /held/);
    const kernel = Object.fromEntries(['sem', 'shm', 'msg'].map((f) => [f, readFileSync(`/proc/sysvipc/${f}`, 'latin1')]));
    const rows = tablesJson(home, ['--aid', 'me']);
    const pids = tablesJson(home, ['--type', 'pid']);
    writeFileSync(go, '');
    const r = await me.done;
    return { nativeId, kernel, rows, pids, out: r.stdout.replace(/^held\n/, ''), code: r.code, stderr: r.stderr };
  } finally {
    other.child.kill('SIGTERM');
    await other.done;
    runNative(['use', nativeId, 'rmid'], SHMTOOL);
  }
}

describe('the application\'s own view of /proc/sysvipc', () => {
  it('ipcs under appshot lists exactly the application\'s objects, with virtual keys and IDs; outside, nothing changes', async () => {
    const r = await withThreeHolders('ipcs -a');
    expect(r.code, r.stderr).toBe(0);
    const want = r.rows
      .filter((row) => ['sem', 'shm', 'msg'].includes(row.type))
      .map((row) => `${row.type} 0x005eed21 ${row.virtual}`)
      .sort();
    expect(want).toHaveLength(3);
    expect(ipcsObjects(r.out)).toEqual(want);
    for (const row of want) expect(Number(row.split(' ')[2])).toBeGreaterThanOrEqual(0x10000000); // remapped: virtual for sure
    // Outside appshot, the kernel's listing still has everything, by system ID.
    const shmIds = r.kernel.shm.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[1]);
    expect(shmIds).toContain(r.nativeId);
    expect(shmIds).toContain(String(r.rows.find((row) => row.type === 'shm')!.system));
  });

  it('each line is the kernel\'s own line for the object, with only the key and ID made virtual', async () => {
    const r = await withThreeHolders('for f in sem shm msg; do echo "== $f"; cat /proc/sysvipc/$f; done');
    const views = r.out.split(/^== (?:sem|shm|msg)\n/m).slice(1);
    expect(views).toHaveLength(3);
    ['sem', 'shm', 'msg'].forEach((family, i) => {
      const kernel = r.kernel[family].split('\n');
      const view = views[i].split('\n').filter((l) => l);
      expect(view[0]).toBe(kernel[0]); // the header, as is
      expect(view).toHaveLength(2);
      const row = r.rows.find((x) => x.type === family)!;
      const kernelLine = kernel.find((l) => l.match(/^\s*-?\d+\s+(\d+)/)?.[1] === String(row.system))!;
      expect(view[1].slice(0, 21)).toBe(`${String(0x5eed21).padStart(10)} ${String(row.virtual).padStart(10)}`);
      // The PID columns name processes as the application does (shm: cpid
      // lpid, msg: lspid lrpid); the rest is the kernel's, byte for byte.
      const pidColumns = { sem: [], shm: [4, 5], msg: [5, 6] }[family as 'sem' | 'shm' | 'msg'];
      const fields = (l: string) => l.trim().split(/\s+/);
      const [v, k] = [fields(view[1]), fields(kernelLine)];
      for (const c of pidColumns) {
        const creator = r.pids.find((p) => p.system === Number(k[c]));
        expect(Number(v[c])).toBe(creator ? creator.virtual : Number(k[c]));
      }
      if (!pidColumns.length) expect(view[1].slice(21)).toBe(kernelLine.slice(21));
      else expect(v.filter((_, i) => !pidColumns.includes(i)).slice(2)).toEqual(k.filter((_, i) => !pidColumns.includes(i)).slice(2));
    });
  });

  it('ipcmk creates and ipcrm removes by virtual ID and by virtual key', () => {
    const home = makeHome();
    const script = [
      'm=$(ipcmk -M 4096 | sed "s/.*: //"); q=$(ipcmk -Q | sed "s/.*: //"); s=$(ipcmk -S 2 | sed "s/.*: //")',
      'echo "made $m $q $s"',
      'ipcs | grep -c "^0x"',
      'ipcrm -m "$m" -q "$q" -s "$s"; echo "ipcrm $?"',
      'ipcs | grep -c "^0x"',
      `${SHMTOOL} get 0x5eed22 100 c >/dev/null; ${MSGTOOL} get 0x5eed22 c >/dev/null`,
      'ipcs | grep -c "^0x"',
      'ipcrm -M 0x5eed22 -Q 0x5eed22; echo "ipcrm $?"',
      'ipcs | grep -c "^0x"',
      'ipcrm -m 12345; echo "ipcrm $?"',
    ].join('\n');
    const r = appshot(home, ['run', '--aid', 'mk', '--no-identity', '--', 'sh', '-c', script]);
    const out = lines(r.stdout);
    const ids = out[0].split(' ').slice(1).map(Number);
    expect(ids.every((id) => id >= 0x10000000), out[0]).toBe(true);
    expect(out.slice(1)).toEqual(['3', 'ipcrm 0', '0', '2', 'ipcrm 0', '0', 'ipcrm 1']);
    expect(r.stderr).toMatch(/ipcrm: invalid id \(12345\)/);
    expect(tablesJson(home, ['--aid', 'mk'])).toEqual([]);
  });
});
