import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { AppshotError, EXIT } from '../ts/errors.js';
import { resolveHome } from '../ts/home.js';
import { ROOT } from '../ts/paths.js';
import { outcome } from './commands/common.js';
import * as check from './commands/check.js';
import * as completion from './commands/completion.js';
import * as exec from './commands/exec.js';
import * as gc from './commands/gc.js';
import * as inspect from './commands/inspect.js';
import * as kill from './commands/kill.js';
import * as prune from './commands/prune.js';
import * as ps from './commands/ps.js';
import * as restore from './commands/restore.js';
import * as run from './commands/run.js';
import * as snapshot from './commands/snapshot.js';
import * as stop from './commands/stop.js';
import * as tables from './commands/tables.js';
import * as template from './commands/template.js';

// The appshot command: one module per command under commands/, each adding
// itself to the program. Each command loads what it needs when it runs:
// `appshot tables` over a million rows answers within 200 ms only if it does
// not load the rest.

const program = new Command('appshot')
  .description('Run unmodified Linux programs under virtual resource IDs')
  .version(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version, '-V, --version', 'print the version of appshot')
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

for (const command of [
  run,
  exec,
  stop,
  kill,
  gc,
  tables,
  ps,
  inspect,
  prune,
  snapshot,
  restore,
  template,
  check,
  completion,
])
  command.register(program);

// A reader that stops early (| head) is no error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(outcome.exitCode);
  throw err;
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
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
// Exit once stdout has drained: a large --json to a pipe is written asynchronously.
process.stdout.write('', () => process.exit(outcome.exitCode));
