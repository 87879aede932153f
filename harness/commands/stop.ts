import type { Command } from '../commander.js';
import { checkAppAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';

/** -t SECONDS: a whole or decimal number of seconds, 0 included. */
function graceSeconds(spec: string): number {
  const s = Number(spec);
  if (!/^\d+(\.\d+)?$/.test(spec.trim()) || !Number.isFinite(s))
    throw new AppshotError(`-t '${spec}' is not a number of seconds: give how long the processes have between SIGTERM and SIGKILL, for example -t 10 or -t 0.5`, EXIT.usage);
  return s;
}

export function register(program: Command): void {
  program
    .command('stop')
    .description("end running application AID: SIGTERM to each of its processes, SIGKILL to those still running after the grace period; waits until they are gone and the application is cleaned up (by its harness, or by stop if the harness is gone)")
    .usage('[-t SECONDS] AID')
    .argument('<aid>', 'the running application')
    .option('-t, --time <seconds>', 'grace period between SIGTERM and SIGKILL', '10')
    .action(async (aid: string, o: { time: string }) => {
      checkAppAid(aid);
      const grace = graceSeconds(o.time);
      const [{ openTableDb, tablesMade }, lc, { describeCleanup }] = await Promise.all([import('../../ts/tabledb.js'), import('../../ts/lifecycle.js'), import('../report.js')]);
      const home = resolveHome();
      if (!tablesMade(home)) throw new AppshotError(`there is no application '${aid}' under ${home}: nothing has run there yet`, EXIT.failure);
      const t = openTableDb(home);
      try {
        lc.runningApp(t, aid, { allowStale: true });
        const r = await lc.stopApp(t, aid, grace * 1000);
        if (r.killed.length)
          process.stdout.write(`${r.killed.length} process(es) of application '${aid}' still ran ${grace} s after SIGTERM and had SIGKILL: ${r.killed.map((k) => `${k.pid} (${k.command || '?'})`).join(', ')}\n`);
        if (r.cleanup) for (const line of describeCleanup(r.cleanup, 'its harness was gone: cleaned up after')) process.stdout.write(line + '\n');
        process.stdout.write(`stopped application '${aid}'\n`);
      } finally {
        t.env.close();
      }
    });
}
