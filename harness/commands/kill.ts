import type { Command } from '../commander.js';
import { checkAppAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';

export function register(program: Command): void {
  program
    .command('kill')
    .description("send a signal to every process of running application AID (its own processes only: a PID another program has taken since is never signalled)")
    .usage('[-s SIGNAL] AID')
    .argument('<aid>', 'the running application')
    .option('-s, --signal <signal>', 'the signal: a name (KILL, SIGTERM, usr1) or a number', 'KILL')
    .action(async (aid: string, o: { signal: string }) => {
      checkAppAid(aid);
      const [{ openTableDb, tablesMade }, lc] = await Promise.all([import('../../ts/tabledb.js'), import('../../ts/lifecycle.js')]);
      const sig = lc.parseSignal(o.signal);
      const home = resolveHome();
      if (!tablesMade(home)) throw new AppshotError(`there is no application '${aid}' under ${home}: nothing has run there yet`, EXIT.failure);
      const t = openTableDb(home);
      try {
        lc.runningApp(t, aid);
        const reached = lc.killApp(t, aid, sig);
        const name = lc.signalName(sig);
        if (!reached.length) throw new AppshotError(`application '${aid}' has no process left to send ${name} to; its harness is cleaning up after it`, EXIT.failure);
        process.stdout.write(`sent ${name} to ${reached.length} process(es) of application '${aid}': ${reached.map((p) => p.pid).join(', ')}\n`);
      } finally {
        t.env.close();
      }
    });
}
