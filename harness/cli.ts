import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from './commander.js';
import { AppshotError, EXIT } from '../ts/errors.js';
import { resolveHome } from '../ts/home.js';
import { ROOT } from '../ts/paths.js';
import { outcome } from './commands/common.js';

// The appshot command: one module per command under commands/, each adding
// itself to the program. Each command loads what it needs when it runs:
// `appshot tables` over a million rows answers within 100 ms only if it does
// not load the rest. It runs as one bundle (scripts/bundle.mjs, bin/appshot.cjs),
// where import() of a module of ours runs that module when it is called.

const program = new Command('appshot')
  .description('Run unmodified Linux programs under virtual resource IDs')
  .version(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version, '-V, --version', 'print the version of appshot')
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

type Module = { register(program: Command): void };
/** Each command's module by the command's name, in the order help lists them. */
const COMMANDS: Record<string, () => Promise<Module>> = {
  run: () => import('./commands/run.js'),
  exec: () => import('./commands/exec.js'),
  stop: () => import('./commands/stop.js'),
  kill: () => import('./commands/kill.js'),
  gc: () => import('./commands/gc.js'),
  tables: () => import('./commands/tables.js'),
  ps: () => import('./commands/ps.js'),
  inspect: () => import('./commands/inspect.js'),
  prune: () => import('./commands/prune.js'),
  snapshot: () => import('./commands/snapshot.js'),
  restore: () => import('./commands/restore.js'),
  template: () => import('./commands/template.js'),
  check: () => import('./commands/check.js'),
  completion: () => import('./commands/completion.js'),
};
// `appshot NAME ...` registers NAME alone: the other thirteen modules are
// not run (15-20 ms of the first page of `appshot tables` when each was a
// file of its own, 1-2 ms in the bundle with its code cache); help, shell
// completion (which lists every command) and anything not a command's name
// register them all, so commander can list them or suggest one.
async function registerCommands(): Promise<void> {
  const named = process.argv[2];
  const only = Object.hasOwn(COMMANDS, named ?? '') && named !== 'completion' ? [named] : Object.keys(COMMANDS);
  for (const module of await Promise.all(only.map((name) => COMMANDS[name]()))) module.register(program);
}

// A reader that stops early (| head) is no error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(outcome.exitCode);
  throw err;
});

// No top-level await: the bundle (scripts/bundle.mjs) is CommonJS, which has none.
void main();

async function main(): Promise<void> {
  try {
    await registerCommands();
    await program.parseAsync(process.argv);
  } catch (err) {
    reportError(err);
  }
  // Exit once stdout has drained: a large --json to a pipe is written asynchronously.
  process.stdout.write('', () => process.exit(outcome.exitCode));
}

function reportError(err: unknown): void {
  if (err instanceof CommanderError) {
    outcome.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage;
    if (err.code === 'commander.help') outcome.exitCode = EXIT.usage;
  } else if (err instanceof AppshotError) {
    process.stderr.write(`appshot: ${err.message}\n`);
    outcome.exitCode = err.exitCode;
  } else if (/^MDB_[A-Z_]+:/.test((err as Error).message ?? '')) {
    // LMDB's own refusal, past the checks made before it opened (ts/tabledb.ts).
    process.stderr.write(`appshot: the tables under ${resolveHome()} cannot be read: ${(err as Error).message}; they may be damaged. Move tables.mdb aside (appshot starts new tables) or restore it from a backup\n`);
    outcome.exitCode = EXIT.home;
  } else {
    process.stderr.write(`appshot: internal error: ${(err as Error).stack ?? err}\n`);
    outcome.exitCode = EXIT.failure;
  }
}
