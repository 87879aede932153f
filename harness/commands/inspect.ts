import type { Command } from '../commander.js';
import { checkAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';
import { type Format, formatOf } from '../views/format.js';
import { formatOption } from './common.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .argument('<aid>', 'the application')
    .description(
      'show one application whole: state, harness and supervisor, processes, objects (shared memory with size and attachments), ports, pools, path redirections, template, identity mode, command, when it started and ended',
    )
    .usage('AID [--format plain|table|json | --json]')
    .addOption(formatOption(['plain', 'table', 'json']))
    .option('--json', 'print it as one JSON object (--format json)', false)
    .action(async (aid: string, o: { json: boolean; format?: Format }) => {
      const format = formatOf(o);
      checkAid(aid);
      const [{ appDetail, renderApp }, { openTableDb, tablesMade }, { foldJournal }] = await Promise.all([
        import('../views/app.js'),
        import('../../ts/tabledb.js'),
        import('../../ts/sysv/object.js'),
      ]);
      const home = resolveHome();
      const none = () =>
        new AppshotError(`no application '${aid}' in ${home}: nothing has run under that AID here; 'appshot tables --apps' lists the applications there are`, EXIT.failure);
      // A fresh home has no application, and asking makes nothing there.
      if (!tablesMade(home)) throw none();
      const t = openTableDb(home);
      foldJournal(t); // its private objects' rows, made since the last write
      const detail = await appDetail(t, aid);
      if (!detail) throw none();
      process.stdout.write((format === 'json' ? JSON.stringify(detail, null, 2) : renderApp(detail, format === 'csv' ? 'plain' : format)) + '\n');
    });
}
