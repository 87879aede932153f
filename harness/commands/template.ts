import { existsSync } from 'node:fs';
import { type Command, Option } from '../commander.js';
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
        '       appshot template rm NAME [--force]\n' +
        '       appshot template serve NAME --publish PUBLIC:VIRTUAL [--min N] [--max N] [--idle SECONDS] [--conns N] [--balance rr|lc] [--cold]',
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
  registerServe(templateCommand); // its block is at the end of this file
}

/* --- `template serve` (issue 19: instances on demand behind a published port) --- */

/** A whole number of at least lo, for an option; exit 2 otherwise. */
function count(opt: string, text: string, lo: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < lo) throw new AppshotError(`${opt} ${text}: give a whole number, at least ${lo}`, EXIT.usage);
  return n;
}

export function registerServe(templateCommand: Command): void {
  templateCommand
    .command('serve')
    .description(
      'serve template NAME behind a published port: its pool daemon holds PUBLIC; a clone is made when a connection comes and none can take it (up to --max), one idle --idle seconds is ended (down to --min), one that ends is replaced up to --min; one log line per decision; runs until SIGINT or SIGTERM, which end its instances (SIGKILL leaves them running for the next serve of NAME to adopt, or appshot gc to end)',
    )
    .usage('NAME --publish PUBLIC:VIRTUAL [--min N] [--max N] [--idle SECONDS] [--conns N] [--balance rr|lc] [--cold] [--port-range LO-HI]')
    .argument('<name>', 'the template')
    .requiredOption('--publish <public:virtual>', "the clones' TCP port VIRTUAL reachable at system port PUBLIC (docker -p's reading: [IP:]PUBLIC:VIRTUAL; without IP, on every address)")
    .option('--min <n>', 'instances kept running however idle', '0')
    .option('--max <n>', 'instances at most', '8')
    .option('--idle <seconds>', 'an instance with no connection open this long is ended (down to --min)', '60')
    .option('--conns <n>', 'open connections one instance is given at most; more wait in the daemon and make another instance (0: no limit, instances are added when a connection waits 100 ms to be accepted)', '0')
    .addOption(new Option('--balance <policy>', 'how the pool picks the instance for each connection').choices(['rr', 'lc']).default('rr'))
    .option('--cold', "start each clone's command again instead of continuing the template's processes", false)
    .option('--port-range <lo-hi>', "system ports for the clones' virtualized ports", `${S.PORT_RANGE_DEFAULT.lo}-${S.PORT_RANGE_DEFAULT.hi}`)
    .action(async (name: string, o: { publish: string; min: string; max: string; idle: string; conns: string; balance: Balance; cold: boolean; portRange: string }) => {
      const { parsePortRange, parsePublish } = await import('../../ts/pool.js');
      const publish = parsePublish(o.publish);
      const [min, max, conns] = [count('--min', o.min, 0), count('--max', o.max, 1), count('--conns', o.conns, 0)];
      if (min > max) throw new AppshotError(`--min ${min} is more than --max ${max}: give --min at most --max`, EXIT.usage);
      const idleS = /^\d+(\.\d+)?$/.test(o.idle) ? Number(o.idle) : NaN;
      if (!(idleS > 0)) throw new AppshotError(`--idle ${o.idle}: give the seconds an instance may stay idle, more than 0`, EXIT.usage);
      const portRange = parsePortRange(o.portRange);
      const [{ templateFile }, { checkTemplateName }] = await Promise.all([import('../../ts/home.js'), import('../../ts/template.js')]);
      checkTemplateName(name);
      const home = resolveHome();
      if (!existsSync(templateFile(home, name))) throw new AppshotError(`there is no template '${name}' in ${home}; 'appshot template list' lists them, 'appshot template create' makes one`, EXIT.usage);
      const [{ openTableDb }, { serve }] = await Promise.all([import('../../ts/tabledb.js'), import('../serve.js')]);
      const t = openTableDb(home);
      outcome.exitCode = await serve(t, name, { publish, min, max, idleS, conns, balance: o.balance, cold: o.cold, home, portRange });
    });
}
