/** What the scenario benchmarks do with the appshot command. */
import { spawn, spawnSync } from 'node:child_process';
import { basename } from 'node:path';
import { CLI_PATH } from '../ts/paths.js';

/** The environment of an appshot command on home: none of an enclosing
 * application's (a bench run from inside one measures its own). */
export function cliEnv(home: string): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, APPSHOT_HOME: home };
  delete e.APPSHOT_AID;
  delete e.LD_PRELOAD;
  return e;
}

/** Runs an appshot command to completion; throws with its stderr when it fails. */
export function appshot(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI_PATH, ...args], { env: cliEnv(home), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`appshot ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r;
}

/** Starts program under `appshot run --aid aid` and resolves once it has
 * printed "ready"; ended resolves when the application is over. */
export async function startApp(home: string, aid: string, program: string, args: string[]): Promise<{ ended: Promise<unknown> }> {
  const app = spawn(process.execPath, [CLI_PATH, 'run', '--aid', aid, '--', program, ...args], {
    env: { ...process.env, APPSHOT_HOME: home },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ended = new Promise((r) => app.on('close', r));
  await new Promise<void>((resolve, reject) => {
    app.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    app.on('close', (code) => reject(new Error(`${basename(program)} ended early (${code})`)));
  });
  return { ended };
}
