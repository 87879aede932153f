import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, realpathSync } from 'node:fs';
import { AppshotError } from './errors.js';
import { resolveHome } from './home.js';
import { pageSize, prctlMmMapSize, seccompActionAvailable } from './libc.js';
import { ADDON_PATH, POOL_PATH, SHIM_PATH, SUPERVISOR_PATH } from './paths.js';
import { statusFields } from './procinfo.js';
import { kernelObjects } from './sysv/kernel.js';
import type { IpcType } from './sysv/ipctype.js';

/**
 * What this kernel and machine allow appshot, item by item, as `criu
 * check` does: each with a verdict and one line of why. Only reads: the
 * kernel's limits under /proc/sys, the totals of /proc/sysvipc, this
 * process's own status, and a question or two to the kernel that changes
 * nothing (seccomp's GET_ACTION_AVAIL, PR_SET_MM_MAP_SIZE). The two runs
 * it makes (a shell under the shim, `unshare --user true`) touch nothing.
 */

/** ok: works; limited: works with a restriction, or only future features
 * need it; missing: what needs it cannot run. */
export type Verdict = 'ok' | 'limited' | 'missing';

export interface CheckItem {
  name: string;
  verdict: Verdict;
  /** One line: what was found. */
  why: string;
  /** What to do about it, when it is not ok. */
  fix?: string;
  /** Whether appshot's commands of today need it: a missing one fails the check. */
  required: boolean;
  /** What needs it. */
  neededFor: string;
}

const TODAY = 'run, snapshot, restore, templates';

function readSys(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1').trim();
  } catch {
    return undefined;
  }
}

/** A limit the kernel gives as an unsigned long; 2^62 and more is none in practice. */
const NO_LIMIT = 2n ** 62n;

function bytes(n: bigint): string {
  if (n >= NO_LIMIT) return 'no limit';
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} bytes` : `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

/** How much of a table of IDs is used: missing when full, limited past 90%. */
function usage(type: IpcType, max: number, noun: string, sysctl: string): { verdict: Verdict; text: string; fix?: string } {
  let inUse: number;
  try {
    inUse = kernelObjects(type).size;
  } catch {
    return { verdict: 'ok', text: `up to ${max} ${noun}s` };
  }
  const text = `${inUse} of ${max} ${noun}s in use in this IPC namespace`;
  const fix = `remove ${noun}s no one needs (appshot gc; ipcs, ipcrm) or raise ${sysctl}`;
  if (max === 0) return { verdict: 'missing', text: `no ${noun} can be made (${sysctl} is 0)`, fix: `raise ${sysctl}` };
  if (inUse >= max) return { verdict: 'missing', text: `${text}: no more can be made`, fix };
  if (inUse >= 0.9 * max) return { verdict: 'limited', text: `${text}: nearly full`, fix };
  return { verdict: 'ok', text };
}

function noSysv(name: string, type: IpcType): CheckItem | undefined {
  if (existsSync(`/proc/sysvipc/${type}`)) return undefined;
  return {
    name,
    verdict: 'missing',
    why: `no /proc/sysvipc/${type}: this kernel has no SysV IPC (CONFIG_SYSVIPC)`,
    fix: 'run appshot on a kernel built with SysV IPC',
    required: true,
    neededFor: TODAY,
  };
}

function sysvSem(): CheckItem {
  const name = 'sysv-sem';
  const absent = noSysv(name, 'sem');
  if (absent) return absent;
  const [msl, mns, opm, mni] = (readSys('/proc/sys/kernel/sem') ?? '').split(/\s+/).map(Number);
  const u = usage('sem', mni, 'semaphore set', 'kernel.sem (its 4th field)');
  return { name, verdict: u.verdict, why: `${u.text}; ${msl} semaphores a set, ${mns} in all, ${opm} operations a semop`, fix: u.fix, required: true, neededFor: TODAY };
}

function sysvShm(): CheckItem {
  const name = 'sysv-shm';
  const absent = noSysv(name, 'shm');
  if (absent) return absent;
  const max = BigInt(readSys('/proc/sys/kernel/shmmax') ?? '0');
  const all = BigInt(readSys('/proc/sys/kernel/shmall') ?? '0');
  const mni = Number(readSys('/proc/sys/kernel/shmmni') ?? '0');
  const u = usage('shm', mni, 'segment', 'kernel.shmmni');
  const total = all >= NO_LIMIT ? all : all * BigInt(pageSize());
  const why = `${u.text}; ${bytes(max)} a segment, ${bytes(total)} in all`;
  // A program's larger segments are refused (EINVAL), under appshot as without.
  if (u.verdict === 'ok' && max < 32n * 2n ** 20n)
    return { name, verdict: 'limited', why: `${why}: larger segments are refused`, fix: 'raise kernel.shmmax (sysctl -w kernel.shmmax=...)', required: true, neededFor: TODAY };
  return { name, verdict: u.verdict, why, fix: u.fix, required: true, neededFor: TODAY };
}

function sysvMsg(): CheckItem {
  const name = 'sysv-msg';
  const absent = noSysv(name, 'msg');
  if (absent) return absent;
  const mni = Number(readSys('/proc/sys/kernel/msgmni') ?? '0');
  const max = BigInt(readSys('/proc/sys/kernel/msgmax') ?? '0');
  const mnb = BigInt(readSys('/proc/sys/kernel/msgmnb') ?? '0');
  const u = usage('msg', mni, 'queue', 'kernel.msgmni');
  return { name, verdict: u.verdict, why: `${u.text}; ${bytes(max)} a message, ${bytes(mnb)} a queue`, fix: u.fix, required: true, neededFor: TODAY };
}

/** The programs of the build: the supervisor, the pool daemon, the addon. */
function built(): CheckItem {
  const absent = [SUPERVISOR_PATH, POOL_PATH, ADDON_PATH].filter((p) => !existsSync(p));
  if (absent.length)
    return { name: 'build', verdict: 'missing', why: `not built: ${absent.join(', ')}`, fix: 'run npm run build (or npm install) in the appshot folder', required: true, neededFor: TODAY };
  return { name: 'build', verdict: 'ok', why: 'the supervisor, the pool daemon and the addon are built', required: true, neededFor: TODAY };
}

/** The shim loads into a dynamically linked program: a shell that lists
 * its own mappings under LD_PRELOAD names it. */
function preload(): CheckItem {
  const item = (verdict: Verdict, why: string, fix?: string): CheckItem => ({ name: 'preload', verdict, why, fix, required: true, neededFor: TODAY });
  try {
    accessSync(SHIM_PATH, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return item('missing', `the shim ${SHIM_PATH} ${code === 'ENOENT' ? 'is not built' : `cannot be read (${code})`}`, 'run npm run build in the appshot folder');
  }
  const env: NodeJS.ProcessEnv = { ...process.env, LD_PRELOAD: SHIM_PATH };
  delete env.APPSHOT_AID; // an idle shim: nothing to translate, nothing touched
  const r = spawnSync('/bin/sh', ['-c', 'while IFS= read -r l; do printf "%s\\n" "$l"; done < /proc/self/maps'], { env, encoding: 'utf8', timeout: 10_000 });
  if (r.error) return item('missing', `cannot run /bin/sh to try the shim: ${r.error.message}`, 'check that /bin/sh exists');
  const real = realpathSync(SHIM_PATH);
  if (r.status === 0 && (r.stdout.includes(real) || r.stdout.includes(SHIM_PATH))) return item('ok', `${SHIM_PATH} loads into a program under LD_PRELOAD`);
  const said = (r.stderr || '').trim().split('\n')[0];
  return item(
    'missing',
    `${SHIM_PATH} did not load into /bin/sh under LD_PRELOAD${said ? `: ${said}` : ` (exit ${r.status ?? r.signal})`}`,
    'rebuild it for this machine (npm run build); a system that ignores LD_PRELOAD cannot run appshot',
  );
}

/** The home: resolveHome's rules (ts/home.ts), nothing of its own. */
function home(): CheckItem {
  const item = (verdict: Verdict, why: string, fix?: string): CheckItem => ({ name: 'home', verdict, why, fix, required: true, neededFor: TODAY });
  let path: string;
  try {
    path = resolveHome();
  } catch (err) {
    if (!(err instanceof AppshotError)) throw err;
    // Its message names the cause, then after '; ' what to do.
    const m = /^(.*?); ((?:set|run|check|remove) .*)$/.exec(err.message);
    return m ? item('missing', m[1], m[2]) : item('missing', err.message, 'set APPSHOT_HOME to a directory of your own');
  }
  if (!existsSync(path)) return item('ok', `${path}: not there yet, made on first run`);
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
  } catch (err) {
    return item('missing', `${path} is not writable (${(err as NodeJS.ErrnoException).code})`, 'set APPSHOT_HOME to a directory you can write');
  }
  return item('ok', `${path}: yours, mode 0700`);
}

/** This process's effective capabilities. */
function capabilities(): bigint {
  const eff = statusFields('self')?.get('CapEff');
  return eff ? BigInt(`0x${eff}`) : 0n;
}
const CAP_SYS_PTRACE = 19;
const CAP_SYS_ADMIN = 21;
const CAP_SYS_RESOURCE = 24;
const CAP_CHECKPOINT_RESTORE = 40;
const hasCap = (caps: bigint, cap: number) => ((caps >> BigInt(cap)) & 1n) === 1n;

const SECCOMP_RET_TRAP = 0x00030000;
const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
const EOPNOTSUPP = 95;

function seccomp(): CheckItem {
  const item = (verdict: Verdict, why: string, fix?: string): CheckItem => ({ name: 'seccomp', verdict, why, fix, required: false, neededFor: 'statically linked programs (later)' });
  const mode = statusFields('self')?.get('Seccomp');
  if (mode === undefined) return item('limited', 'this kernel has no seccomp (no Seccomp field in /proc/self/status)', 'a kernel built with CONFIG_SECCOMP_FILTER');
  const trap = seccompActionAvailable(SECCOMP_RET_TRAP);
  if (trap !== 0)
    return item('limited', `seccomp filters are not available (seccomp(GET_ACTION_AVAIL) errno ${trap})`, 'a kernel built with CONFIG_SECCOMP_FILTER');
  const notif = seccompActionAvailable(SECCOMP_RET_USER_NOTIF);
  const already = mode === '2' ? `; this process runs under ${statusFields('self')?.get('Seccomp_filters') ?? 'some'} filter(s) already, more can stack` : '';
  if (notif !== 0)
    return item(
      'limited',
      `filters with SECCOMP_RET_TRAP, but no SECCOMP_RET_USER_NOTIF (errno ${notif}${notif === EOPNOTSUPP ? ', a kernel before 5.0' : ''})${already}`,
      'Linux 5.0 or later',
    );
  return item('ok', `filters with SECCOMP_RET_TRAP and SECCOMP_RET_USER_NOTIF${already}`);
}

function userNamespaces(): CheckItem {
  const item = (verdict: Verdict, why: string, fix?: string): CheckItem => ({ name: 'userns', verdict, why, fix, required: false, neededFor: 'private namespaces without root (the test suite; later, isolation)' });
  const max = readSys('/proc/sys/user/max_user_namespaces');
  if (max === undefined) return item('limited', 'this kernel has no user namespaces (no /proc/sys/user/max_user_namespaces)', 'a kernel built with CONFIG_USER_NS');
  if (max === '0') return item('limited', 'user.max_user_namespaces is 0: none can be made', 'sysctl -w user.max_user_namespaces=15000');
  const clone = readSys('/proc/sys/kernel/unprivileged_userns_clone');
  const apparmor = readSys('/proc/sys/kernel/apparmor_restrict_unprivileged_userns');
  const settings = [`user.max_user_namespaces ${max}`, ...(clone !== undefined ? [`kernel.unprivileged_userns_clone ${clone}`] : []), ...(apparmor !== undefined ? [`kernel.apparmor_restrict_unprivileged_userns ${apparmor}`] : [])].join(', ');
  const r = spawnSync('unshare', ['--user', 'true'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return item('limited', `${settings}; cannot try one: unshare: ${(r.error as NodeJS.ErrnoException).code}`, 'install util-linux');
  if (r.status !== 0) {
    const fix = clone === '0' ? 'sysctl -w kernel.unprivileged_userns_clone=1' : apparmor === '1' ? 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0' : 'allow user namespaces (a container may forbid them)';
    return item('limited', `${settings}; this user cannot make one: ${(r.stderr || '').trim().split('\n')[0] || `exit ${r.status}`}`, fix);
  }
  return item('ok', `${settings}; this user can make one`);
}

function ptrace(): CheckItem {
  const item = (verdict: Verdict, why: string, fix?: string): CheckItem => ({ name: 'ptrace', verdict, why, fix, required: false, neededFor: 'whole-process snapshot (appshot snapshot without --ipc-only)' });
  const cap = hasCap(capabilities(), CAP_SYS_PTRACE);
  const capText = cap ? 'with CAP_SYS_PTRACE' : 'without CAP_SYS_PTRACE';
  const scope = readSys('/proc/sys/kernel/yama/ptrace_scope');
  if (scope === undefined) return item('ok', `no Yama: processes of the same user can be traced (${capText})`);
  switch (scope) {
    case '0':
      return item('ok', `Yama ptrace_scope 0: processes of the same user can be traced (${capText})`);
    case '1':
    case '2':
      if (cap) return item('ok', `Yama ptrace_scope ${scope}, ${capText}: any process can be traced`);
      return item(
        'limited',
        `Yama ptrace_scope ${scope}, ${capText}: ${scope === '1' ? 'only a process\'s ancestors can trace it' : 'only CAP_SYS_PTRACE can trace'}`,
        'run as root (CAP_SYS_PTRACE), or sysctl -w kernel.yama.ptrace_scope=0',
      );
    default:
      return item('limited', `Yama ptrace_scope ${scope}: no process can be traced until reboot`, 'set kernel.yama.ptrace_scope below 3 at boot');
  }
}

function prSetMmMap(): CheckItem {
  const item = (verdict: Verdict, why: string, fix?: string): CheckItem => ({ name: 'pr_set_mm_map', verdict, why, fix, required: false, neededFor: 'whole-process restore' });
  const size = prctlMmMapSize();
  if (size < 0)
    return item('limited', `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE) failed (errno ${-size}): this kernel has no checkpoint/restore`, 'a kernel built with CONFIG_CHECKPOINT_RESTORE');
  const caps = capabilities();
  const held = [
    [CAP_CHECKPOINT_RESTORE, 'CAP_CHECKPOINT_RESTORE'],
    [CAP_SYS_RESOURCE, 'CAP_SYS_RESOURCE'],
    [CAP_SYS_ADMIN, 'CAP_SYS_ADMIN'],
  ].filter(([c]) => hasCap(caps, c as number)).map(([, n]) => n);
  // The map itself needs no capability; only the exe link it may also set.
  if (!held.length)
    return item(
      'limited',
      `the kernel takes PR_SET_MM_MAP (${size}-byte map), without privilege; setting a restored process's exe link needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, which this process lacks, so /proc/PID/exe of a process it restores shows appshot-checkpoint`,
      'run as root, or give appshot-checkpoint CAP_CHECKPOINT_RESTORE (setcap) if the exe link matters',
    );
  return item('ok', `the kernel takes PR_SET_MM_MAP (${size}-byte map); this process has ${held.join(', ')}`);
}

const PROBES: [string, () => CheckItem][] = [
  ['sysv-sem', sysvSem],
  ['sysv-shm', sysvShm],
  ['sysv-msg', sysvMsg],
  ['build', built],
  ['preload', preload],
  ['home', home],
  ['seccomp', seccomp],
  ['userns', userNamespaces],
  ['ptrace', ptrace],
  ['pr_set_mm_map', prSetMmMap],
];

/** Every item, in order: today's needs first, then the later ones. A probe
 * that fails unexpectedly is reported as its item, missing. */
export function machineCheck(): CheckItem[] {
  return PROBES.map(([name, probe]) => {
    try {
      return probe();
    } catch (err) {
      return { name, verdict: 'missing' as const, why: `could not be checked: ${(err as Error).message}`, fix: 'report this as a bug of appshot', required: true, neededFor: TODAY };
    }
  });
}
