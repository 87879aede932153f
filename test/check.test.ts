import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_PATH, ROOT } from '../ts/paths.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { appshot, lines, makeHome } from './helpers.js';

interface Item {
  name: string;
  verdict: 'ok' | 'limited' | 'missing';
  why: string;
  fix?: string;
  required: boolean;
  neededFor: string;
}

const NAMES = ['sysv-sem', 'sysv-shm', 'sysv-msg', 'build', 'preload', 'home', 'seccomp', 'userns', 'ptrace', 'pr_set_mm_map'];
const LATER = ['seccomp', 'userns', 'ptrace', 'pr_set_mm_map'];

function checkJson(home: string): { code: number | null; report: { ok: boolean; items: Item[] }; stderr: string } {
  const r = appshot(home, ['check', '--json']);
  return { code: r.code, report: JSON.parse(r.stdout), stderr: r.stderr };
}

const item = (items: Item[], name: string) => items.find((i) => i.name === name)!;

/** The exit code the verdicts call for: 1 when something needed today is missing. */
const expectedCode = (items: Item[]) => (items.some((i) => i.required && i.verdict === 'missing') ? 1 : 0);

describe('appshot check', () => {
  it('gives every item a verdict and a reason, and exits as the verdicts say', () => {
    const home = join(makeHome(), 'not-yet');
    const { code, report, stderr } = checkJson(home);
    expect(stderr).toBe('');
    expect(report.items.map((i) => i.name)).toEqual(NAMES);
    for (const i of report.items) {
      expect(['ok', 'limited', 'missing']).toContain(i.verdict);
      expect(i.why.length).toBeGreaterThan(10);
      expect(i.why).not.toContain('\n');
      if (i.verdict !== 'ok') expect(i.fix).toBeTruthy();
      // What only later features need never fails the check.
      expect(i.required).toBe(!LATER.includes(i.name));
      if (!i.required) expect(i.verdict).not.toBe('missing');
    }
    expect(code).toBe(expectedCode(report.items));
    expect(report.ok).toBe(code === 0);
    // This machine runs the suite: what today's commands need is here.
    for (const name of ['sysv-sem', 'sysv-shm', 'sysv-msg', 'build', 'preload']) expect(item(report.items, name).verdict, item(report.items, name).why).toBe('ok');

    // A home not made yet is fine, and the check does not make it.
    expect(item(report.items, 'home')).toMatchObject({ verdict: 'ok' });
    expect(item(report.items, 'home').why).toContain('made on first run');
    expect(existsSync(home)).toBe(false);
  });

  it("reads the kernel's limits and counts this IPC namespace's objects", () => {
    const { report } = checkJson(makeHome());
    const semmni = readFileSync('/proc/sys/kernel/sem', 'latin1').trim().split(/\s+/)[3];
    expect(item(report.items, 'sysv-sem').why).toContain(`${kernelObjects('sem').size} of ${semmni} semaphore sets in use`);
    const shmmni = readFileSync('/proc/sys/kernel/shmmni', 'latin1').trim();
    expect(item(report.items, 'sysv-shm').why).toContain(`${kernelObjects('shm').size} of ${shmmni} segments in use`);
    const msgmni = readFileSync('/proc/sys/kernel/msgmni', 'latin1').trim();
    expect(item(report.items, 'sysv-msg').why).toContain(`${kernelObjects('msg').size} of ${msgmni} queues in use`);
    // seccomp: the kernel's own word on this process.
    const seccomp = readFileSync('/proc/self/status', 'latin1').match(/^Seccomp:\s+(\d)/m);
    if (!seccomp) expect(item(report.items, 'seccomp').verdict).toBe('limited');
  });

  it('prints one line per item, its verdict first, and a closing line', () => {
    const home = makeHome();
    const r = appshot(home, ['check']);
    const { report } = checkJson(home);
    expect(r.code).toBe(expectedCode(report.items));
    const out = lines(r.stdout);
    for (const i of report.items) expect(out.some((l) => l.startsWith(i.verdict.padEnd(8) + ' ' + i.name + ' '))).toBe(true);
    expect(out.at(-1)).toMatch(r.code === 0 ? /^looks good/ : /^missing for today's commands/);
  });

  it('fails, naming the home and the fix, when the home is open to other users; and changes nothing', () => {
    const home = makeHome();
    chmodSync(home, 0o777);
    const { code, report, stderr } = checkJson(home);
    expect(stderr).toBe('');
    const h = item(report.items, 'home');
    expect(h.verdict).toBe('missing');
    expect(h.why).toContain(home);
    expect(h.why).toContain('can be written by other users');
    expect(h.fix).toContain(`chmod 700 ${home}`);
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    expect(statSync(home).mode & 0o777).toBe(0o777);

    const text = appshot(home, ['check']);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^missing\s+home\s/m);
    expect(text.stdout).toContain("missing for today's commands: home");
    expect(text.stderr).toBe('');
    chmodSync(home, 0o700);
  });

  it('reports what only later features need as limited, without failing, for a process without capabilities', () => {
    // No CAP_SYS_RESOURCE, CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN: root
    // with an empty bounding set, or any other user as it is.
    const home = join(tmpdir(), `appshot-check-nocaps-${process.pid}`, 'home');
    const command = [process.execPath, CLI_PATH, 'check', '--json'];
    const [program, ...args] = process.geteuid!() === 0 ? ['setpriv', '--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', ...command] : command;
    const r = spawnSync(program, args, { encoding: 'utf8', env: { PATH: process.env.PATH, APPSHOT_HOME: home } });
    expect(r.stderr).toBe('');
    const report = JSON.parse(r.stdout) as { items: Item[] };
    const mm = item(report.items, 'pr_set_mm_map');
    expect(mm.verdict).toBe('limited');
    expect(mm.required).toBe(false);
    expect(mm.fix).toContain('CAP_CHECKPOINT_RESTORE');
    expect(r.status).toBe(expectedCode(report.items));
    expect(r.status).toBe(0);
    expect(item(report.items, 'home').why).toContain('made on first run');
    expect(existsSync(home)).toBe(false);
  });
});

describe('appshot --version', () => {
  const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
  for (const flag of ['--version', '-V'])
    it(`${flag} prints the version in package.json`, () => {
      const r = appshot(makeHome(), [flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
      expect(r.stderr).toBe('');
    });

  it('is listed in the help', () => {
    const r = appshot(makeHome(), ['--help']);
    expect(r.stdout).toMatch(/-V, --version\s+print the version of appshot/);
  });
});
