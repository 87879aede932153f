import { Command, CommanderError, Option } from 'commander';
import { checkAid, checkAppAid } from '../ts/aid.js';
import { AppshotError, EXIT } from '../ts/errors.js';
import { ensureHome, resolveHome } from '../ts/home.js';
import type { Balance, Publication } from '../ts/pool.js';
import * as S from '../tables/schema.js';
import type { TablesFlags } from './inspector.js';

import { SORT_FIELDS, STATE_FILTERS, TYPE_FILTERS } from './views/filters.js';

// Each command loads what it needs when it runs: `appshot tables` over a
// million rows answers within 200 ms only if it does not load the rest.

const program = new Command('appshot')
  .description('Run unmodified Linux programs under virtual resource IDs')
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

let exitCode: number = EXIT.ok;

interface RunFlags {
  aid?: string;
  keep: boolean;
  identity: boolean;
  publish: string[];
  balance: Balance;
  portRange: string;
  redir: string[];
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Each --redir, checked alone and then as a list, before anything runs. */
async function redirections(specs: string[], home: string) {
  const { checkRedirects, parseRedirect } = await import('../ts/redirect.js');
  return checkRedirects(specs.map(parseRedirect), home);
}

/** Each --publish, checked: one public port and one virtual port once each. */
async function publications(specs: string[]): Promise<Publication[]> {
  const { parsePublish } = await import('../ts/pool.js');
  const list = specs.map(parsePublish);
  for (const key of ['public', 'virtual'] as const) {
    const seen = new Set<number>();
    for (const p of list) {
      if (seen.has(p[key])) throw new AppshotError(`--publish names ${key} port ${p[key]} twice; give each port once`, EXIT.usage);
      seen.add(p[key]);
    }
  }
  return list;
}

program
  .command('run')
  .description('run CMD as an application whose IPC IDs and keys are virtual')
  .usage('[--aid NAME] [--keep] [--publish PUBLIC:VIRTUAL]... [--redir FROM=TO]... -- CMD [ARGS...]')
  .option('--aid <name>', 'application ID (default: a new one, app-N)')
  .option('--keep', 'leave kernel objects and tables when the application ends, for a later snapshot', false)
  .addOption(new Option('--no-identity', 'never let a virtual ID equal its system ID (to test what a restored application sees)'))
  .option('--publish <public:virtual>', "reach the application's TCP port VIRTUAL at system port PUBLIC; applications publishing one port share it as a pool (repeatable)", collect, [])
  .addOption(new Option('--balance <policy>', 'how a pool picks the instance for each connection').choices(['rr', 'lc']).default('rr'))
  .option('--port-range <lo-hi>', 'system ports for virtual ports whose own number is taken', `${S.PORT_RANGE_DEFAULT.lo}-${S.PORT_RANGE_DEFAULT.hi}`)
  .option('--redir <from=to>', 'in every process of the application, paths at or under FROM lead to the same place under TO (absolute paths; repeatable, the first that covers a path applies)', collect, [])
  .argument('<cmd...>', 'the command to run and its arguments')
  .passThroughOptions()
  .action(async (cmd: string[], o: RunFlags) => {
    if (o.aid !== undefined) checkAppAid(o.aid);
    const { parsePortRange } = await import('../ts/pool.js');
    const publish = await publications(o.publish);
    const portRange = parsePortRange(o.portRange);
    const home = resolveHome();
    const redirects = await redirections(o.redir, home);
    const { run } = await import('./run.js');
    exitCode = await run(cmd, { aid: o.aid, keep: o.keep, noIdentity: !o.identity, home, publish, balance: o.balance, portRange, redirects });
  });

program
  .command('gc')
  .description('clean up after applications whose harness died: kernel objects and table rows')
  .option('--kept', 'also end applications left with --keep', false)
  .option('--json', 'print the report as JSON', false)
  .action(async (o: { kept: boolean; json: boolean }) => {
    const [{ gc }, { describeCleanup }, { openTableDb }, { sweepStops }, { sweepSeeds }] = await Promise.all([
      import('../ts/cleanup.js'),
      import('./report.js'),
      import('../ts/tabledb.js'),
      import('../ts/stops.js'),
      import('../ts/seeds.js'),
    ]);
    const home = resolveHome();
    const t = openTableDb(home);
    // Snapshots that died holding an application stopped first: its
    // processes run again before gc judges whether it is live.
    const resumed = sweepStops(home).map((note) => ({ aid: '', removed: {}, rows: 0, notes: [note] }));
    const reports = [...resumed, ...gc(t, { kept: o.kept })];
    // After gc has ended the clones whose harness died while making them.
    for (const note of sweepSeeds(t)) reports.push({ aid: '', removed: {}, rows: 0, notes: [note] });
    if (o.json) process.stdout.write(JSON.stringify(reports, null, 2) + '\n');
    else if (!reports.length) process.stdout.write('nothing to clean up\n');
    else for (const r of reports) for (const line of describeCleanup(r, 'ended')) process.stdout.write(line + '\n');
  });

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
    const { tablesCommand } = await import('./inspector.js');
    exitCode = await tablesCommand(o);
  });

program
  .command('ps')
  .description("show each application's processes (virtual and system PID, parent, state, command), its ports and the pools it publishes into")
  .option('--aid <name>', 'only this application')
  .option('--json', 'print the processes as JSON for scripts', false)
  .action(async (o: { aid?: string; json: boolean }) => {
    if (o.aid !== undefined) checkAid(o.aid);
    const [{ openTableDb }, { processRows, renderProcesses }, { poolRows, portRows, renderPools, renderPorts }] = await Promise.all([
      import('../ts/tabledb.js'),
      import('./views/processes.js'),
      import('./views/ports.js'),
    ]);
    const t = openTableDb(resolveHome());
    // A row of a process that is gone is stale, not a process: not shown.
    const rows = [...processRows(t, { aid: o.aid })].filter((r) => r.state !== 'gone');
    if (o.json) {
      process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      return;
    }
    process.stdout.write(renderProcesses(rows) + '\n');
    const ports = portRows(t, { aid: o.aid });
    if (ports.length) process.stdout.write('\nPorts:\n' + renderPorts(ports) + '\n');
    const pools = await poolRows(t, { aid: o.aid });
    if (pools.length) process.stdout.write('\nPools behind published ports:\n' + renderPools(pools) + '\n');
  });

const snapshotCommand = program
  .command('snapshot')
  .description("capture an application's state through its virtual IDs into FILE (FIG. 5): tables, semaphore values, segment contents, queued messages, ports, command line, environment")
  .usage('AID -o FILE [--stop] | inspect FILE [--json]')
  .argument('<aid>', 'the application')
  .option('-o, --output <file>', 'where to write the snapshot (required)')
  .option('--stop', 'then end the application: its processes and kernel objects', false)
  .action(async (aid: string, o: { output?: string; stop: boolean }) => {
    checkAid(aid);
    if (!o.output) throw new AppshotError(`say where to write the snapshot: appshot snapshot ${aid} -o FILE`, EXIT.usage);
    const [{ openTableDb }, { snapshot }, { terminalProgress }] = await Promise.all([import('../ts/tabledb.js'), import('../ts/snapshot.js'), import('../ts/progress.js')]);
    const t = openTableDb(resolveHome());
    const s = await snapshot(t, aid, o.output, { stop: o.stop, progress: terminalProgress('capturing shared memory') });
    const rate = s.shmBytes >= 2 ** 20 ? `, ${(s.shmBytes / 1e9 / s.seconds).toFixed(2)} GB/s` : '';
    process.stdout.write(
      `snapshot of '${aid}' written to ${o.output}: ${s.sems} semaphore set(s), ${s.segments} segment(s) (${mib(s.shmBytes)}), ${s.queues} queue(s) (${s.messages} message(s)), ${s.processes} process(es) ${o.stop ? 'ended' : 'resumed'}; ${s.seconds.toFixed(2)} s${rate}\n`,
    );
  });

snapshotCommand
  .command('inspect')
  .description('list what a snapshot holds, checking every section, without restoring it')
  .argument('<file>', 'the snapshot')
  .option('--json', 'print JSON for scripts', false)
  .action(async (file: string, o: { json: boolean }) => {
    const [{ inspectSnapshot }, { renderSnapshot }] = await Promise.all([import('../ts/snapcontents.js'), import('./views/snapshots.js')]);
    const report = inspectSnapshot(file);
    process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : renderSnapshot(report) + '\n');
  });

program
  .command('restore')
  .description("restore an application from a snapshot under new system IDs, then start its command (FIG. 6); all or nothing")
  .usage('FILE [--aid NAME] [-- CMD [ARGS...]]')
  .argument('<file>', 'the snapshot')
  .argument('[cmd...]', 'the command to start instead of the saved one')
  .option('--aid <name>', "the application ID (default: the snapshot's)")
  .action(async (file: string, cmd: string[], o: { aid?: string }) => {
    if (o.aid !== undefined) checkAppAid(o.aid);
    const home = ensureHome(resolveHome());
    const [{ openTableDb }, { restore }, { terminalProgress }, { runRegistered }] = await Promise.all([
      import('../ts/tabledb.js'),
      import('../ts/restore.js'),
      import('../ts/progress.js'),
      import('./run.js'),
    ]);
    const t = openTableDb(home, { create: true });
    const given = cmd.length ? cmd : undefined;
    const r = restore(t, file, { aid: o.aid, command: given, progress: terminalProgress('restoring shared memory') });
    process.stderr.write(
      `appshot: restored '${r.aid}' from ${file}: ${r.sems} semaphore set(s), ${r.segments} segment(s) (${mib(r.shmBytes)}), ${r.queues} queue(s) (${r.messages} message(s)) in ${r.seconds.toFixed(2)} s\n`,
    );
    const m = r.meta;
    const opts = { home, keep: false, noIdentity: m.noIdentity, publish: m.publish, balance: 'rr' as const, portRange: S.PORT_RANGE_DEFAULT, redirects: m.redirects ?? [] };
    exitCode = await runRegistered(t, r.aid, given ?? m.command, opts, { firstVpid: m.firstVpid, ...(given ? {} : { env: m.env, cwd: m.cwd }) });
  });

const templateCommand = program
  .command('template')
  .description('snapshot virtual templates (FIGs. 7-9): make one from a snapshot and rules, clone many instances from it')
  .usage('create NAME --from SNAPSHOT [--rules FILE] | clone NAME [-n N] [-- CMD] | list | inspect NAME | rm NAME');

async function templateTables(create = false) {
  const home = create ? ensureHome(resolveHome()) : resolveHome();
  const [{ openTableDb }, cmd] = await Promise.all([import('../ts/tabledb.js'), import('./template.js')]);
  return { home, t: openTableDb(home, { create }), cmd };
}

templateCommand
  .command('create')
  .description('make template NAME from a snapshot: classify each resource (shared, duplicate, virtualize, multiplex, network-unique) by the rules or by appshot, and make its shared segments once')
  .argument('<name>', 'the template name')
  .requiredOption('--from <snapshot>', 'the snapshot of the warmed-up application')
  .option('--rules <file>', 'the rules: DEFINE, REDIR PATH, SET ENV, SHARE, DUPLICATE, VIRTUALIZE, MULTIPLEX')
  .action(async (name: string, o: { from: string; rules?: string }) => {
    const { t, cmd } = await templateTables(true);
    cmd.create(t, name, o.from, o.rules);
  });

templateCommand
  .command('clone')
  .description('clone N instances of template NAME, each a new application started at once, and supervise them until each ends')
  .usage('NAME [-n N] [--port-range LO-HI] [-- CMD [ARGS...]]')
  .argument('<name>', 'the template')
  .argument('[cmd...]', 'the command each clone starts instead of the saved one')
  .option('-n, --count <n>', 'how many clones', '1')
  .addOption(new Option('--balance <policy>', 'how the pool of a multiplexed port picks the clone for each connection').choices(['rr', 'lc']).default('rr'))
  .option('--port-range <lo-hi>', 'system ports for the clones\' virtualized ports', `${S.PORT_RANGE_DEFAULT.lo}-${S.PORT_RANGE_DEFAULT.hi}`)
  .action(async (name: string, cmd: string[], o: { count: string; balance: Balance; portRange: string }) => {
    const count = Number(o.count);
    if (!Number.isSafeInteger(count) || count < 1 || count > 10000) throw new AppshotError(`-n ${o.count}: give the number of clones, from 1 to 10000`, EXIT.usage);
    const { parsePortRange } = await import('../ts/pool.js');
    const portRange = parsePortRange(o.portRange);
    const { home, t, cmd: tc } = await templateTables();
    exitCode = await tc.clone(t, name, { count, command: cmd.length ? cmd : undefined, home, balance: o.balance, portRange });
  });

templateCommand
  .command('list')
  .description('the templates, their resources by class and their running clones')
  .option('--json', 'print JSON for scripts', false)
  .action(async (o: { json: boolean }) => {
    const { t, cmd } = await templateTables(true);
    cmd.list(t, o.json);
  });

templateCommand
  .command('inspect')
  .description("every resource of a template with the class it got and why, its rules, its shared segments and running clones")
  .argument('<name>', 'the template')
  .option('--json', 'print JSON for scripts', false)
  .action(async (name: string, o: { json: boolean }) => {
    const { t, cmd } = await templateTables();
    cmd.inspect(t, name, o.json);
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

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

// A reader that stops early (| head) is no error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(exitCode);
  throw err;
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage;
    if (err.code === 'commander.help') exitCode = EXIT.usage;
  } else if (err instanceof AppshotError) {
    process.stderr.write(`appshot: ${err.message}\n`);
    exitCode = err.exitCode;
  } else if (/^MDB_[A-Z_]+:/.test((err as Error).message ?? '')) {
    // LMDB's own refusal, past the checks made before it opened (ts/tabledb.ts).
    process.stderr.write(`appshot: the tables under ${resolveHome()} cannot be read: ${(err as Error).message}; they may be damaged. Move tables.mdb aside (appshot starts new tables) or restore it from a backup\n`);
    exitCode = EXIT.home;
  } else {
    process.stderr.write(`appshot: internal error: ${(err as Error).stack ?? err}\n`);
    exitCode = EXIT.failure;
  }
}
// Exit once stdout has drained: a large --json to a pipe is written asynchronously.
process.stdout.write('', () => process.exit(exitCode));
