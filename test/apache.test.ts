import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';
import { APACHE, appshotAsync, kernelSems, makeHome, tablesJson, waitFor, writeApacheConf } from './helpers.js';

/** Apache as root with `User www-data` and `Mutex sysvsem` (issue 16,
 * section 3): its children change their user and then take the accept
 * mutex, a SysV semaphore the root parent made. Two instances on one
 * virtual port, in two remapped applications, each serve their own page
 * and leave nothing on the host. */

const NETTOOL = join(ROOT, 'test', 'fixtures', 'nettool.py');
/** The virtual port: chosen per run (the system ports come from each
 * application's range, so two runs at once do not collide either). */
const VPORT = 20000 + Math.floor(Math.random() * 20000);

/** Apache's folders are read by www-data: outside the test root (which is
 * its owner's alone), under the system's temporary directory. */
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function apacheDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'appshot-apache-'));
  dirs.push(dir);
  chmodSync(dir, 0o755);
  writeApacheConf(dir, VPORT, name);
  return dir;
}

describe('Apache', () => {
  it('as root with User www-data and Mutex sysvsem: two instances on one virtual port, each serving its page', async () => {
    const home = makeHome();
    const copies = ['one', 'two'].map((name) => {
      const dir = apacheDir(name);
      // Apache in its own session: its shutdown signals its process group.
      const script = `setsid ${APACHE} -f ${dir}/httpd.conf -DFOREGROUND & pid=$!
        until grep -q 'resuming normal operations' ${dir}/error.log 2>/dev/null; do sleep 0.05; done
        echo listening
        until [ -e ${home}/go ]; do sleep 0.05; done
        python3 ${NETTOOL} get 127.0.0.1 ${VPORT} /who.txt
        python3 ${NETTOOL} get 127.0.0.1 ${VPORT + 1} /who.txt
        kill -TERM $pid; wait $pid; echo stopped $?`;
      return { dir, app: appshotAsync(home, ['run', '--no-identity', '--aid', `apache-${name}`, '--', 'sh', '-c', script]) };
    });
    for (const c of copies) await waitFor(c.app.out, /listening/);
    const ports = tablesJson(home, ['--type', 'port']);
    expect(ports.filter((r) => r.virtual === VPORT).map((r) => r.aid).sort()).toEqual(['apache-one', 'apache-two']);
    expect(new Set(ports.map((r) => r.system)).size).toBe(ports.length);
    // Each instance's accept mutex, made by root, used by www-data.
    const sems = tablesJson(home, ['--type', 'sem']);
    expect(sems.map((r) => r.aid).sort()).toEqual(['apache-one', 'apache-two']);
    writeFileSync(join(home, 'go'), '');
    const [one, two] = await Promise.all(copies.map((c) => c.app.done));
    expect(one.stdout).toBe('listening\none\none\nstopped 0\n');
    expect(two.stdout).toBe('listening\ntwo\ntwo\nstopped 0\n');
    for (const [r, c] of [[one, copies[0]], [two, copies[1]]] as const) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(readFileSync(join(c.dir, 'error.log'), 'utf8')).not.toMatch(/appshot:|emerg|AH00023|AH00024/);
    }
    // Apache removed its semaphores; nothing of them is left.
    const left = new Set(kernelSems().map((s) => s.semid));
    expect(sems.filter((r) => left.has(r.system))).toEqual([]);
    expect(tablesJson(home, ['--type', 'sem'])).toEqual([]);
  });
});
