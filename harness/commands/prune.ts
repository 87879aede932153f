import type { Command } from 'commander';
import { resolveHome } from '../../ts/home.js';

export function register(program: Command): void {
  program
    .command('prune')
    .description('remove the records of applications that have ended (and with --kept, end and remove kept ones); never a running application or a template')
    .option('--kept', "also applications left with --keep: their kernel objects are removed, as 'gc --kept' does", false)
    .option('--dry-run', 'say what would be removed, and change nothing', false)
    .option('--json', 'print the report as JSON', false)
    .action(async (o: { kept: boolean; dryRun: boolean; json: boolean }) => {
      const [{ prune }, { describePrune, tablesMade }, { openTableDb }] = await Promise.all([
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
}
