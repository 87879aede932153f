import { type Command, Option } from 'commander';
import type { TablesFlags } from '../inspector.js';
import { SORT_FIELDS, STATE_FILTERS, TYPE_FILTERS } from '../views/filters.js';
import { outcome } from './common.js';

export function register(program: Command): void {
  program
    .command('tables')
    .description('the tables for an administrator: translations (or --apps, the applications), filtered, sorted, paged; --verify checks them against the kernel')
    .option('--apps', 'show the applications: AID, state, processes, created, template', false)
    .option('--aid <name>', 'only this application')
    .addOption(new Option('--type <type>', 'only this resource type').choices([...TYPE_FILTERS]))
    .addOption(new Option('--state <state>', "only applications in this state").choices([...STATE_FILTERS]))
    .option('--vrid <n>', 'only this virtual ID')
    .option('--srid <n>', 'the owner of this system ID (the reverse table): which application and virtual ID')
    .addOption(new Option('--sort <field>', 'sort by this column (default: AID, type, virtual)').choices([...SORT_FIELDS]))
    .option('--desc', 'sort in descending order', false)
    .option('--limit <n>', 'rows per page (default: 50 on a table, all with --json or --csv)')
    .option('--page <k>', 'which page (from 1)')
    .option('--json', 'print JSON for scripts (streamed)', false)
    .option('--csv', 'print CSV for scripts (streamed)', false)
    .option('--watch [seconds]', 'redraw the first page in place every so often (default 1 s), like top')
    .option('--verify', 'check the tables against themselves and the kernel; exit 0 only when consistent', false)
    .option('--repair', 'with the check, fix what can be fixed safely and say what was done', false)
    .action(async (o: TablesFlags) => {
      const { tablesCommand } = await import('../inspector.js');
      outcome.exitCode = await tablesCommand(o);
    });
}
