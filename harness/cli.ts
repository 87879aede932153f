import { Command, CommanderError, Option } from 'commander';
import { gc } from '../ts/cleanup.js';
import { AppshotError, EXIT } from '../ts/errors.js';
import { resolveHome } from '../ts/home.js';
import { type Balance, type Publication, parsePortRange, parsePublish } from '../ts/pool.js';
import * as S from '../tables/schema.js';
import { checkAid } from '../ts/registry.js';
import { openTables } from '../ts/tables.js';
import { TYPE_FILTERS, renderTable, translationRows } from '../tables/inspect.js';
import { processRows, renderProcesses } from '../tables/processes.js';
import { poolRows, portRows, renderPools, renderPorts } from '../tables/ports.js';
import { describeCleanup } from './report.js';
import { run } from './run.js';

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
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Each --publish, checked: one public port and one virtual port once each. */
function publications(specs: string[]): Publication[] {
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
  .usage('[--aid NAME] [--keep] [--publish PUBLIC:VIRTUAL]... -- CMD [ARGS...]')
  .option('--aid <name>', 'application ID (default: a new one, app-N)')
  .option('--keep', 'leave kernel objects and tables when the application ends, for a later snapshot', false)
  .addOption(new Option('--no-identity', 'never let a virtual ID equal its system ID (to test what a restored application sees)'))
  .option('--publish <public:virtual>', "reach the application's TCP port VIRTUAL at system port PUBLIC; applications publishing one port share it as a pool (repeatable)", collect, [])
  .addOption(new Option('--balance <policy>', 'how a pool picks the instance for each connection').choices(['rr', 'lc']).default('rr'))
  .option('--port-range <lo-hi>', 'system ports for virtual ports whose own number is taken', `${S.PORT_RANGE_DEFAULT.lo}-${S.PORT_RANGE_DEFAULT.hi}`)
  .argument('<cmd...>', 'the command to run and its arguments')
  .passThroughOptions()
  .action(async (cmd: string[], o: RunFlags) => {
    exitCode = await run(cmd, {
      aid: o.aid,
      keep: o.keep,
      noIdentity: !o.identity,
      home: resolveHome(),
      publish: publications(o.publish),
      balance: o.balance,
      portRange: parsePortRange(o.portRange),
    });
  });

program
  .command('gc')
  .description('clean up after applications whose harness died: kernel objects and table rows')
  .option('--kept', 'also end applications left with --keep', false)
  .option('--json', 'print the report as JSON', false)
  .action((o: { kept: boolean; json: boolean }) => {
    const t = openTables(resolveHome());
    const reports = gc(t, { kept: o.kept });
    if (o.json) process.stdout.write(JSON.stringify(reports, null, 2) + '\n');
    else if (!reports.length) process.stdout.write('nothing to clean up\n');
    else for (const r of reports) for (const line of describeCleanup(r, 'ended')) process.stdout.write(line + '\n');
  });

program
  .command('tables')
  .description('show the translation tables, and the pool behind each published port')
  .option('--aid <name>', 'only this application')
  .addOption(new Option('--type <type>', 'only this resource type').choices([...TYPE_FILTERS]))
  .option('--json', 'print JSON for scripts', false)
  .action(async (o: { aid?: string; type?: string; json: boolean }) => {
    if (o.aid !== undefined) checkAid(o.aid);
    const t = openTables(resolveHome());
    const rows = [...translationRows(t, { aid: o.aid, type: o.type })];
    const pools = rows.some((r) => r.type === 'publish') ? await poolRows(t, { aid: o.aid }) : [];
    if (o.json) {
      const withPool = rows.map((r) => (r.type === 'publish' ? { ...r, pool: pools.find((p) => p.public === r.system) ?? null } : r));
      process.stdout.write(JSON.stringify(withPool, null, 2) + '\n');
    } else {
      process.stdout.write(renderTable(rows) + '\n');
      if (pools.length) process.stdout.write('\nPools behind published ports:\n' + renderPools(pools) + '\n');
    }
  });

program
  .command('ps')
  .description("show each application's processes (virtual and system PID, parent, state, command), its ports and the pools it publishes into")
  .option('--aid <name>', 'only this application')
  .option('--json', 'print the processes as JSON for scripts', false)
  .action(async (o: { aid?: string; json: boolean }) => {
    if (o.aid !== undefined) checkAid(o.aid);
    const t = openTables(resolveHome());
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

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage;
    if (err.code === 'commander.help') exitCode = EXIT.usage;
  } else if (err instanceof AppshotError) {
    process.stderr.write(`appshot: ${err.message}\n`);
    exitCode = err.exitCode;
  } else {
    process.stderr.write(`appshot: internal error: ${(err as Error).stack ?? err}\n`);
    exitCode = EXIT.failure;
  }
}
// Exit once stdout has drained: a large --json to a pipe is written asynchronously.
process.stdout.write('', () => process.exit(exitCode));
