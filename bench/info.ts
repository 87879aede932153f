/**
 * IPC_INFO and *_INFO with 1,000 objects of each family in the application
 * (bench/native/infobench.c), and the stress-ng `msg` stressor pinned to one
 * CPU (which asks IPC_INFO, MSG_INFO and MSG_STAT_ANY every 256 messages,
 * with about 1,000 queues of its own), natively and under the shim in the
 * same round. Every run has an IPC namespace of its own (unshare --ipc), so
 * the application is alone there, as on a machine of its own, whatever else
 * the host runs, and its objects go with the namespace however the run
 * ends. The *_INFO calls are also timed beside another application's objects
 * (one of each family, made in the same namespace first), where the shim
 * reads each of the application's objects for the totals.
 */
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import type { InfoFigures, StressFigures } from './figures.js';
import { type Stage, sized } from './stage.js';
import { INFO, STRESS_MSG } from './targets.js';


const CALLS: { metric: string; label: string; target: boolean }[] = [
  { metric: 'sem_info', label: 'semctl(SEM_INFO)', target: true },
  { metric: 'sem_ipc_info', label: 'semctl(IPC_INFO)', target: true },
  { metric: 'shm_info', label: 'shmctl(SHM_INFO)', target: true },
  { metric: 'shm_ipc_info', label: 'shmctl(IPC_INFO)', target: true },
  { metric: 'msg_info', label: 'msgctl(MSG_INFO)', target: true },
  { metric: 'msg_ipc_info', label: 'msgctl(IPC_INFO)', target: true },
  { metric: 'sem_info_after_change', label: 'semctl(SEM_INFO) right after a set was made and removed', target: false },
  { metric: 'shm_info_after_change', label: 'shmctl(SHM_INFO) right after a segment was made and removed', target: false },
  { metric: 'msg_info_after_change', label: 'msgctl(MSG_INFO) right after a queue was made and removed', target: false },
];

/** One of each family made natively in the namespace before the command. */
const FOREIGN_OBJECTS = 'ipcmk -Q >/dev/null && ipcmk -M 4096 >/dev/null && ipcmk -S 1 >/dev/null && exec "$@"';

/** How to give a command an IPC namespace of its own, or none when this
 * machine refuses both ways. */
function namespacePrefix(): string[] {
  for (const prefix of [['unshare', '--ipc'], ['unshare', '--user', '--map-root-user', '--ipc']])
    if (spawnSync(prefix[0], [...prefix.slice(1), 'true']).status === 0) return prefix;
  return [];
}

function run(prefix: string[], argv: string[], home: string): { stdout: string; stderr: string } {
  const all = [...prefix, ...argv];
  const r = spawnSync(all[0], all.slice(1), { env: { ...process.env, APPSHOT_HOME: home }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.map((a) => basename(a)).join(' ')} failed (${r.status}): ${r.stderr}`);
  return r;
}

const underShim = (argv: string[]) => [process.execPath, CLI_PATH, 'run', '--', ...argv];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** stress-ng's bogo ops per second of the stressor, by real time and by
 * CPU time, from --metrics-brief. */
function bogoOpsPerSecond(out: string, stressor: string): { real: number; cpu: number } {
  const line = out.split('\n').find((l) => new RegExp(`metrc: \\[\\d+\\] ${stressor}\\s+\\d`).test(l));
  if (!line) throw new Error(`stress-ng printed no metrics for ${stressor}:\n${out}`);
  const fields = line.trim().split(/\s+/);
  return { real: Number(fields[fields.length - 2]), cpu: Number(fields[fields.length - 1]) };
}

function stressNg(prefix: string[], home: string, rounds: number): StressFigures | null {
  if (spawnSync('stress-ng', ['--version']).status !== 0) return null;
  const { stressor, seconds } = STRESS_MSG;
  const argv = ['stress-ng', `--${stressor}`, '1', '--taskset', '0', '-t', String(seconds), '--metrics-brief'];
  const once = (command: string[]) => {
    const r = run(prefix, command, home);
    return bogoOpsPerSecond(r.stdout + r.stderr, stressor);
  };
  const runs: { native: { real: number; cpu: number }; shim: { real: number; cpu: number }; noTrap: { real: number; cpu: number } }[] = [];
  // Alternate, so that drift in the machine hits every side alike.
  for (let i = 0; i < rounds; i++)
    runs.push({ native: once(argv), shim: once(underShim(argv)), noTrap: once([process.execPath, CLI_PATH, 'run', '--no-trap', '--', ...argv]) });
  const side = (k: 'native' | 'shim' | 'noTrap') => ({ real: median(runs.map((r) => r[k].real)), cpu: median(runs.map((r) => r[k].cpu)) });
  const native = side('native');
  const shim = side('shim');
  const noTrap = side('noTrap');
  const cpuRatio = shim.cpu / native.cpu;
  return {
    stressor,
    seconds,
    native,
    shim,
    noTrap,
    ratio: shim.real / native.real,
    cpuRatio,
    noTrapCpuRatio: noTrap.cpu / native.cpu,
    target: STRESS_MSG.ratio,
    met: cpuRatio >= STRESS_MSG.ratio,
  };
}

export function infoScenario(home: string, rounds: number): InfoFigures {
  const prefix = namespacePrefix();
  const program = builtProgram('infobench');
  const argv = [program, '0', String(INFO.objects)];
  const samples: { native: Record<string, number>; shim: Record<string, number>; beside: Record<string, number> }[] = [];
  for (let i = 0; i < rounds; i++) {
    samples.push({
      native: JSON.parse(run(prefix, argv, home).stdout),
      shim: JSON.parse(run(prefix, underShim(argv), home).stdout),
      beside: JSON.parse(run(prefix, ['sh', '-c', FOREIGN_OBJECTS, 'sh', ...underShim(argv)], home).stdout),
    });
  }
  const calls = CALLS.map(({ metric, label, target }) => {
    const nativeNs = median(samples.map((s) => s.native[metric]));
    const shimNs = median(samples.map((s) => s.shim[metric]));
    const besideNs = median(samples.map((s) => s.beside[metric]));
    const ratio = shimNs / nativeNs;
    return { metric, label, nativeNs, shimNs, ratio, besideNs, besideRatio: besideNs / nativeNs, target: target ? INFO.ratio : null, met: target ? ratio <= INFO.ratio : null };
  });
  return { objects: INFO.objects, namespace: prefix.length ? 'own' : 'host', calls, stress: stressNg(prefix, home, rounds) };
}

/** Rounds of the scenario: the default run's one, --full's three. */
const INFO_ROUNDS = { default: 1, full: 3 };

export const infoStage: Stage = {
  name: 'info',
  describe(full) {
    return `IPC_INFO and *_INFO with ${INFO.objects.toLocaleString('en-US')} objects of each family, and stress-ng ${STRESS_MSG.stressor} pinned to one CPU (${sized(full, INFO_ROUNDS)} round(s))`;
  },
  async run(ctx) {
    return { info: infoScenario(ctx.home, sized(ctx.full, INFO_ROUNDS)) };
  },
};
