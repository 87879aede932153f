import type { Command } from '../commander.js';
import { resolveHome } from '../../ts/home.js';

export function register(program: Command): void {
  program
    .command('gc')
    .description('clean up after applications whose harness died: kernel objects and table rows; end the instances a killed template serve left running')
    .option('--kept', 'also end applications left with --keep', false)
    .option('--json', 'print the report as JSON', false)
    .action(async (o: { kept: boolean; json: boolean }) => {
      const [{ gc }, { describeCleanup }, { openTableDb }, { sweepStops }, { sweepSeeds }, { sweepServes }] = await Promise.all([
        import('../../ts/cleanup.js'),
        import('../report.js'),
        import('../../ts/tabledb.js'),
        import('../../ts/stops.js'),
        import('../../ts/seeds.js'),
        import('../../ts/serve.js'),
      ]);
      const home = resolveHome();
      const t = openTableDb(home);
      // Snapshots that died holding an application stopped first: its
      // processes run again before gc judges whether it is live.
      const resumed = sweepStops(home).map((note) => ({ aid: '', removed: {}, rows: 0, notes: [note] }));
      // The instances a killed `template serve` left running are ended (and cleaned up) first.
      const served = (await sweepServes(t)).map((note) => ({ aid: '', removed: {}, rows: 0, notes: [note] }));
      const reports = [...resumed, ...served, ...gc(t, { kept: o.kept })];
      // After gc has ended the clones whose harness died while making them.
      for (const note of sweepSeeds(t)) reports.push({ aid: '', removed: {}, rows: 0, notes: [note] });
      if (o.json) process.stdout.write(JSON.stringify(reports, null, 2) + '\n');
      else if (!reports.length) process.stdout.write('nothing to clean up\n');
      else for (const r of reports) for (const line of describeCleanup(r, 'ended')) process.stdout.write(line + '\n');
    });
}
