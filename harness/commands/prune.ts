import type { Command } from '../commander.js';
import { checkAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';
import { outcome } from './common.js';

export function register(program: Command): void {
  program
    .command('prune')
    .description('remove the records of applications that have ended (and with --kept, end and remove kept ones); never a running application or a template')
    .option('--kept', "also applications left with --keep: their kernel objects are removed, as 'gc --kept' does", false)
    .option('--dry-run', 'say what would be removed, and change nothing', false)
    .option('--json', 'print the report as JSON', false)
    .action(async (o: { kept: boolean; dryRun: boolean; json: boolean }) => {
      const [{ prune }, { describePrune }, { openTableDb, tablesMade }] = await Promise.all([
        import('../../ts/prune.js'),
        import('../views/app.js'),
        import('../../ts/tabledb.js'),
      ]);
      const home = resolveHome();
      // A fresh home has nothing to prune, and nothing is made in it.
      const report = tablesMade(home)
        ? prune(openTableDb(home), { kept: o.kept, dryRun: o.dryRun })
        : { dryRun: o.dryRun, pruned: [], left: [] };
      if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else for (const line of describePrune(report)) process.stdout.write(line + '\n');
    });

  program
    .command('rm')
    .argument('<aid...>', 'the applications')
    .description("remove the records of the named applications, ended or kept (a kept one is ended first, its kernel objects removed), as prune does; never a running one or a template")
    .option('--dry-run', 'say what would be removed, and change nothing', false)
    .option('--json', 'print the report as JSON', false)
    .action(async (aids: string[], o: { dryRun: boolean; json: boolean }) => {
      for (const aid of aids) checkAid(aid);
      const [{ prune }, { describePrune }, { openTableDb, tablesMade }] = await Promise.all([
        import('../../ts/prune.js'),
        import('../views/app.js'),
        import('../../ts/tabledb.js'),
      ]);
      const home = resolveHome();
      if (!tablesMade(home)) throw new AppshotError(`no application '${aids[0]}' in ${home}: nothing was removed; nothing has run under this APPSHOT_HOME yet`, EXIT.failure);
      const report = prune(openTableDb(home), { kept: true, dryRun: o.dryRun, aids });
      if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else for (const line of describePrune(report, 'remove')) process.stdout.write(line + '\n');
      // An application left (a segment still attached) was not removed.
      if (report.left.length) outcome.exitCode = EXIT.failure;
    });
}
