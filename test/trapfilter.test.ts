import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { builtProgram, SHIM_PATH } from '../ts/paths.js';
import { appshotAsync, makeHome, MODES, stopAll } from './helpers.js';

// The shim's seccomp filter (native/shim/trap.c), read back from a running
// program (filterdump: PTRACE_SECCOMP_GET_FILTER) and run here against what
// it must decide, for every system call number and every edge of every
// mapping of the program: a translated call traps exactly when its
// instruction lies in code the program had mapped at start (its own, ld.so's,
// its libraries'; not the shim's, not the vDSO, nothing anonymous, nothing
// below 4 GiB), and every other number is allowed on its number alone, which
// the kernel caches so that those calls never run the filter.
const FILTERDUMP = builtProgram('filterdump');

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const TRAP = 0x00030000 | 0x5a7; // SECCOMP_RET_TRAP with the shim's mark
const ALLOW = 0x7fff0000;

/** What decides whether a trapped number's call is looked at: always, or
 * only with an address (sendto, recvfrom), for a process or group
 * (get/setpriority), when it may block signals (rt_sigprocmask), for
 * SIGSYS (rt_sigaction). */
type Test = 'always' | 'address' | 'which' | 'mayBlock' | 'sigsys';

/** The numbers the shim translates (x86_64), the specification the filter is held to. */
const TRAPPED = new Map<number, Test>([
  [65, 'always'], [66, 'always'], [69, 'always'], [70, 'always'], // semop semctl msgsnd msgrcv
  [44, 'address'], [45, 'address'], // sendto recvfrom
  [220, 'always'], [30, 'always'], [67, 'always'], [62, 'always'], [234, 'always'], // semtimedop shmat shmdt kill tgkill
  [39, 'always'], [186, 'always'], [14, 'mayBlock'], [13, 'sigsys'], // getpid gettid rt_sigprocmask rt_sigaction
  [61, 'always'], [247, 'always'], [110, 'always'], [64, 'always'], [29, 'always'], // wait4 waitid getppid semget shmget
  [31, 'always'], [68, 'always'], [71, 'always'], [121, 'always'], [111, 'always'], // shmctl msgget msgctl getpgid getpgrp
  [124, 'always'], [109, 'always'], [200, 'always'], [129, 'always'], [297, 'always'], // getsid setpgid tkill rt_(tg)sigqueueinfo
  [57, 'always'], [58, 'always'], [49, 'always'], [42, 'always'], [50, 'always'], // fork vfork bind connect listen
  [51, 'always'], [52, 'always'], [43, 'always'], [288, 'always'], // getsockname getpeername accept accept4
  [203, 'always'], [204, 'always'], [144, 'always'], [145, 'always'], [142, 'always'], // sched_{set,get}affinity, _setscheduler...
  [143, 'always'], [148, 'always'], [314, 'always'], [315, 'always'], // sched_getparam, _rr_get_interval, _setattr, _getattr
  [302, 'always'], [125, 'always'], [126, 'always'], [140, 'which'], [141, 'which'], // prlimit64 capget capset get/setpriority
  [252, 'always'], [251, 'always'], [434, 'always'], [424, 'always'], // ioprio_get ioprio_set pidfd_open pidfd_send_signal
  [310, 'always'], [311, 'always'], [312, 'always'], [274, 'always'], // process_vm_readv/writev kcmp get_robust_list
]);

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** A seccomp classic BPF program run on seccomp_data, as the kernel does;
 * also whether it loaded anything but the number and the architecture. */
function runFilter(f: Insn[], data: DataView): { ret: number; other: boolean } {
  let a = 0;
  let other = false;
  const mem = new Uint32Array(16);
  for (let pc = 0; pc < f.length; pc++) {
    const { code, jt, jf, k } = f[pc];
    switch (code) {
      case 0x20: // ld [k]
        if (k > 4) other = true;
        a = data.getUint32(k, true);
        break;
      case 0x60: a = mem[k]; break; // ld M[k]
      case 0x02: mem[k] = a; break; // st M[k]
      case 0x05: pc += k; break; // ja
      case 0x15: pc += a === k ? jt : jf; break; // jeq #k
      case 0x25: pc += a > k ? jt : jf; break; // jgt #k
      case 0x35: pc += a >= k ? jt : jf; break; // jge #k
      case 0x45: pc += (a & k) !== 0 ? jt : jf; break; // jset #k
      case 0x06: return { ret: k, other }; // ret #k
      default: throw new Error(`filter instruction ${code.toString(16)} at ${pc} is not emulated here`);
    }
  }
  throw new Error('the filter ran off its end');
}

function seccompData(arch: number, nr: number, ip: bigint, args: bigint[]): DataView {
  const d = new DataView(new ArrayBuffer(64));
  d.setUint32(0, nr, true);
  d.setUint32(4, arch, true);
  d.setBigUint64(8, ip, true);
  args.forEach((v, i) => d.setBigUint64(16 + 8 * i, v, true));
  return d;
}

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
}

function mappings(pid: number): Mapping[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [range, perms, , , , ...rest] = line.split(/\s+/);
      const [start, end] = range.split('-').map((h) => BigInt(`0x${h}`));
      return { start, end, perms, path: rest.join(' ') };
    });
}

/** Where the instruction of a translated call must trap: executable
 * mappings of a file, other than the shim's, at or above 4 GiB. */
function codeAtStart(maps: Mapping[]): Mapping[] {
  return maps.filter((m) => m.perms[2] === 'x' && m.path.startsWith('/') && m.path !== SHIM_PATH && m.start >= 1n << 32n);
}

/** What the filter must answer. */
function expected(code: Mapping[], arch: number, nr: number, ip: bigint, args: bigint[]): number {
  const test = TRAPPED.get(nr);
  if (arch !== AUDIT_ARCH_X86_64 || !test) return ALLOW;
  const lo = (v: bigint) => Number(v & 0xffffffffn);
  if (test === 'address' && args[4] === 0n) return ALLOW;
  if (test === 'which' && lo(args[0]) > 1) return ALLOW;
  if (test === 'mayBlock' && (lo(args[0]) === 1 || args[1] === 0n)) return ALLOW; // SIG_UNBLOCK, or no set
  if (test === 'sigsys' && lo(args[0]) !== 31) return ALLOW;
  return code.some((m) => ip >= m.start && ip < m.end) ? TRAP : ALLOW;
}

/** Argument sets that take each argument test both ways. */
const ARGS: bigint[][] = [
  [0n, 0n, 0n, 0n, 0n, 0n],
  [1n, 1n, 1n, 1n, 1n, 1n],
  [2n, 0n, 0n, 0n, 1n << 32n, 0n],
  [31n, 1n << 32n, 0n, 0n, 0n, 0n],
  [(1n << 32n) | 31n, 0n, 0n, 0n, 0n, 0n],
  [0n, 5n, 0n, 0n, 0x7fff0000n, 0n],
  [(1n << 64n) - 1n, (1n << 64n) - 1n, 0n, 0n, (1n << 64n) - 1n, 0n],
];

function parseFilter(line: string): Insn[] {
  return line.split(' ').map((w) => {
    const [code, jt, jf, k] = w.split(':').map((h) => parseInt(h, 16));
    return { code, jt, jf, k };
  });
}

/** The kernel PIDs of pid's descendants. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let kids = '';
    try {
      kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const k of kids.split(/\s+/).filter(Boolean).map(Number)) out.push(k, ...descendants(k));
  }
  return out;
}

/** The kernel PID of the process under harness pid running exe, once its
 * shim has installed the filter. */
async function startedProgram(harness: number, exe: string): Promise<number> {
  const end = Date.now() + 20_000;
  for (;;) {
    for (const pid of descendants(harness)) {
      try {
        if (readlinkSync(`/proc/${pid}/exe`) === exe && /^Seccomp_filters:\s*[1-9]/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return pid;
      } catch {
        // gone or not ours to read: not the one
      }
    }
    if (Date.now() > end) throw new Error(`no ${exe} with a filter under process ${harness}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterEach(stopAll);

describe.each(MODES)('the trap filter read back from a running program, %s', (mode, flags) => {
  it.each([
    ['sleep', ['sleep', '60']],
    ['perl (four libraries)', ['perl', '-e', 'sleep 60']],
    ['node (seven libraries; the nodesource build here is not PIE: its code below 4 GiB)', ['node', '-e', 'setTimeout(() => {}, 60000)']],
  ])('%s: traps a translated call exactly from the code mapped at start; every other number is decided on its number alone', async (_name, argv) => {
    const exe = realpathSync(spawnSync('sh', ['-c', `command -v ${argv[0]}`], { encoding: 'utf8' }).stdout.trim());
    const app = appshotAsync(makeHome(), ['run', ...flags, '--', ...argv]);
    const pid = await startedProgram(app.child.pid!, exe);
    const maps = mappings(pid);
    const dump = spawnSync(FILTERDUMP, [String(pid)], { encoding: 'utf8' });
    expect(dump.stderr).toBe('');
    const filter = parseFilter(dump.stdout.split('\n')[0]);

    const code = codeAtStart(maps);
    expect(maps.some((m) => m.path === exe && m.perms[2] === 'x')).toBe(true);
    expect(maps.some((m) => m.path === SHIM_PATH && m.perms[2] === 'x')).toBe(true);
    const ips = new Set<bigint>([0n, (1n << 32n) - 1n, 1n << 32n, (1n << 64n) - 1n]);
    for (const m of maps) for (const ip of [m.start - 1n, m.start, (m.start + m.end) / 2n, m.end - 1n, m.end]) if (ip < 1n << 64n) ips.add(ip);
    const nrs = [...Array(470).keys(), 0x40000000 | 39, 0x40000000 | 65, 0xffffffff];

    const wrong: string[] = [];
    for (const nr of nrs) {
      for (const arch of [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386]) {
        for (const args of TRAPPED.has(nr) && arch === AUDIT_ARCH_X86_64 ? ARGS : ARGS.slice(0, 2)) {
          for (const ip of ips) {
            const got = runFilter(filter, seccompData(arch, nr, ip, args));
            const want = expected(code, arch, nr, ip, args);
            if (got.ret !== want) wrong.push(`nr ${nr} arch ${arch.toString(16)} ip ${ip.toString(16)} args ${args}: ${got.ret.toString(16)}, want ${want.toString(16)}`);
            if (got.other && (arch !== AUDIT_ARCH_X86_64 || !TRAPPED.has(nr))) wrong.push(`nr ${nr} arch ${arch.toString(16)}: looked past the number`);
            if (wrong.length > 10) break;
          }
        }
      }
    }
    expect(wrong).toEqual([]);
  });
});
