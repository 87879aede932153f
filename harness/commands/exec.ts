import type { Command } from '../commander.js';
import { checkAppAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';
import * as S from '../../tables/schema.js';
import { outcome } from './common.js';

export function register(program: Command): void {
  program
    .command('exec')
    .description("run CMD as one more process of running application AID: it sees the application's virtual IDs, keys, PIDs, ports and paths, and the application's cleanup waits for it")
    .usage('AID -- CMD [ARGS...]')
    .argument('<aid>', 'the running application to join')
    .argument('<cmd...>', 'the command to run and its arguments')
    .passThroughOptions()
    .action(async (aid: string, given: string[]) => {
      checkAppAid(aid);
      // Options end at AID, so the '--' after it reaches here: not part of CMD.
      const cmd = given[0] === '--' ? given.slice(1) : given;
      if (!cmd.length) throw new AppshotError(`no command to run in application '${aid}': give it after '--', as in 'appshot exec ${aid} -- ipcs'`, EXIT.usage);
      const [{ openTableDb, tablesMade }, lc, { supervise }] = await Promise.all([import('../../ts/tabledb.js'), import('../../ts/lifecycle.js'), import('../run.js')]);
      const home = resolveHome();
      if (!tablesMade(home)) throw new AppshotError(`there is no application '${aid}' under ${home}: nothing has run there yet; start it with 'appshot run --aid ${aid} -- CMD'`, EXIT.failure);
      const t = openTableDb(home);
      let app, settings;
      try {
        app = lc.runningApp(t, aid);
        settings = lc.joinSettings(t, aid);
      } finally {
        t.env.close();
      }
      // The user's environment, as run gives it; but this process is not
      // the application's first (no vpid of a restored one to take).
      const env = { ...process.env } as Record<string, string>;
      delete env.APPSHOT_FIRST_VPID;
      const noIdentity = (app.flags & S.APP_FLAG_NO_IDENTITY) !== 0;
      outcome.exitCode = await supervise(cmd, aid, { home, keep: false, noIdentity, balance: 'rr', ...settings }, { env });
    });
}
