import { type Command, Option } from '../commander.js';
import type { TablesFlags } from '../inspector.js';
import { SORT_FIELDS, STATE_FILTERS, TYPE_FILTERS } from '../views/filters.js';
import { formatOption, outcome } from './common.js';

/** What --verify (and --repair) refuse beside them: the check reads every
 * table whole, so a filter, a sort, a page or a table format would be
 * dropped without a word. --json goes with it (the findings as JSON). */
const NOT_WITH_VERIFY = ['apps', 'aid', 'type', 'state', 'vrid', 'srid', 'sort', 'desc', 'limit', 'page', 'csv', 'watch'];

export function register(program: Command): void {
  program
    .command('tables')
    .description('the tables for an administrator: translations (or --apps, the applications), filtered, sorted, paged; --verify checks them against the kernel')
    .usage(
      '[--apps] [--aid NAME] [--type TYPE] [--state STATE] [--vrid N | --srid N] [--sort FIELD [--desc]] [--limit N] [--page K] [--format plain|table|json|csv | --json | --csv] [--watch [SECONDS]]\n' +
        '       appshot tables --verify [--repair] [--json]',
    )
    // --apps lists applications: the translation filters and the sort do not apply.
    .addOption(new Option('--apps', 'show the applications: AID, state, processes, created, template').default(false).conflicts(['type', 'vrid', 'srid', 'sort', 'desc']))
    .option('--aid <name>', 'only this application')
    .addOption(new Option('--type <type>', 'only this resource type').choices([...TYPE_FILTERS]))
    .addOption(new Option('--state <state>', 'only applications in this state').choices([...STATE_FILTERS]))
    .option('--vrid <n>', 'only this virtual ID')
    // One system ID has one owner: the reverse row names its application and virtual ID.
    .addOption(new Option('--srid <n>', 'the owner of this system ID (the reverse table): which application and virtual ID').conflicts(['aid', 'state', 'vrid']))
    .addOption(new Option('--sort <field>', 'sort by this column (default: AID, type, virtual)').choices([...SORT_FIELDS]))
    .option('--desc', 'with --sort, in descending order', false)
    .option('--limit <n>', 'rows per page (default: 50 as text, all as JSON or CSV)')
    .option('--page <k>', 'which page (from 1)')
    .addOption(formatOption())
    .addOption(new Option('--json', 'print JSON for scripts, streamed (--format json)').default(false).conflicts(['csv']))
    .option('--csv', 'print CSV for scripts, streamed (--format csv)', false)
    .addOption(new Option('--watch [seconds]', 'redraw the first page every so often (default 1 s), like top; into a pipe, one frame after another without terminal codes').conflicts(['json', 'csv']))
    .addOption(new Option('--verify', 'check the tables against themselves and the kernel; exit 0 only when consistent').default(false).conflicts(NOT_WITH_VERIFY))
    .addOption(new Option('--repair', 'check (as --verify), fix what can be fixed safely and say what was done').default(false).conflicts(NOT_WITH_VERIFY))
    .action(async (o: TablesFlags) => {
      const { tablesCommand } = await import('../inspector.js');
      outcome.exitCode = await tablesCommand(o);
    });
}
