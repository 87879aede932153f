import { type Command, Option } from 'commander';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { ensureHome, resolveHome } from '../../ts/home.js';
import type { Balance } from '../../ts/pool.js';
import * as S from '../../tables/schema.js';
import { type Format, formatOf } from '../views/format.js';
import { JSON_HELP, formatOption, outcome } from './common.js';

async function templateTables(create = false) {
  const home = create ? ensureHome(resolveHome()) : resolveHome();
  const [{ openTableDb }, cmd] = await Promise.all([import('../../ts/tabledb.js'), import('../template.js')]);
  return { home, t: openTableDb(home, { create }), cmd };
}

export function register(program: Command): void {
  const templateCommand = program
    .command('template')
    .description(
      'templates: make one from a snapshot and rules (which resources clones share, copy, renumber or pool), then start many clones of it, each a new application',
    )
    .usage(
      'create NAME --from SNAPSHOT [--rules FILE] [--json]\n' +
        '       appshot template clone NAME [-n N] [--cold] [--balance rr|lc] [--port-range LO-HI] [--json] [-- CMD [ARGS...]]\n' +
        '       appshot template list [--format plain|table|json|csv | --json]\n' +
        '       appshot template inspect NAME [--format plain|table|json|csv | --json]\n' +
        '       appshot template rm NAME [--force]',
    );

  templateCommand
    .command('create')
    .description("make template NAME from a snapshot: classify each resource (shared, duplicate, virtualize, multiplex, network-unique) by the rules or by appshot, and make its shared segments once; a whole snapshot is copied into the home (a reflink where the filesystem can), and its clones continue its processes (warm), or it says what in them cannot be cloned so")
    .argument('<name>', 'the template name')
    .requiredOption('--from <snapshot>', 'the snapshot of the warmed-up application')
    .option('--rules <file>', 'the rules: DEFINE, REDIR PATH, SET ENV, SHARE, DUPLICATE, VIRTUALIZE, MULTIPLEX')
    .option('--json', JSON_HELP + ': the template as template inspect --json prints it', false)
    .usage('NAME --from SNAPSHOT [--rules FILE] [--json]')
    .action(async (name: string, o: { from: string; rules?: string; json: boolean }) => {
      (await import('../../ts/template.js')).checkInputs(name, o.from, o.rules); // before the home is made
      const { t, cmd } = await templateTables(true);
      cmd.create(t, name, o.from, o.rules, o.json);
    });

  templateCommand
    .command('clone')
    .description("clone N instances of template NAME, each a new application started at once, and supervise them until each ends; a whole snapshot's clones continue its processes where they were (warm: memory mapped copy-on-write from the template's image, made side by side), others start the command (cold)")
    .usage('NAME [-n N] [--cold] [--balance rr|lc] [--port-range LO-HI] [--json] [-- CMD [ARGS...]]')
    .argument('<name>', 'the template')
    .argument('[cmd...]', 'the command each clone starts instead of the saved one (cold)')
    .option('-n, --count <n>', 'how many clones', '1')
    .option('--cold', "start the saved command in each clone over the template's IPC state, instead of continuing the snapshot's processes (the way for a template that cannot be cloned warm)", false)
    .addOption(new Option('--balance <policy>', 'how the pool of a multiplexed port picks the clone for each connection').choices(['rr', 'lc']).default('rr'))
    .option('--port-range <lo-hi>', 'system ports for the clones\' virtualized ports', `${S.PORT_RANGE_DEFAULT.lo}-${S.PORT_RANGE_DEFAULT.hi}`)
    .option('--json', 'once the clones are made, print them as one line of JSON on stdout (their own output follows it)', false)
    .action(async (name: string, cmd: string[], o: { count: string; cold: boolean; balance: Balance; portRange: string; json: boolean }) => {
      const count = Number(o.count);
      if (!Number.isSafeInteger(count) || count < 1 || count > 10000) throw new AppshotError(`-n ${o.count}: give the number of clones, from 1 to 10000`, EXIT.usage);
      const { parsePortRange } = await import('../../ts/pool.js');
      const portRange = parsePortRange(o.portRange);
      const { home, t, cmd: tc } = await templateTables();
      outcome.exitCode = await tc.clone(t, name, { count, command: cmd.length ? cmd : undefined, cold: o.cold, home, balance: o.balance, portRange, json: o.json });
    });

  templateCommand
    .command('list')
    .description('the templates, their resources by class and their running clones')
    .usage('[--format plain|table|json|csv | --json]')
    .addOption(formatOption())
    .option('--json', 'print JSON for scripts (--format json)', false)
    .action(async (o: { json: boolean; format?: Format }) => {
      const { t, cmd } = await templateTables();
      cmd.list(t, formatOf(o));
    });

  templateCommand
    .command('inspect')
    .description("every resource of a template with the class it got and why, its rules, its shared segments and running clones")
    .usage('NAME [--format plain|table|json|csv | --json]')
    .argument('<name>', 'the template')
    .addOption(formatOption())
    .option('--json', 'print JSON for scripts (--format json)', false)
    .action(async (name: string, o: { json: boolean; format?: Format }) => {
      const { t, cmd } = await templateTables();
      cmd.inspect(t, name, formatOf(o));
    });

  templateCommand
    .command('rm')
    .description('remove a template and its shared segments (refused while clones of it run, unless --force)')
    .argument('<name>', 'the template')
    .option('--force', 'remove it even while clones run (their attachments keep the segments until they detach)', false)
    .action(async (name: string, o: { force: boolean }) => {
      const { t, cmd } = await templateTables();
      cmd.rm(t, name, o.force);
    });
}
