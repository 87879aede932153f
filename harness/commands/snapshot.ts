import type { Command } from 'commander';
import { checkAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';
import { mib } from './common.js';

export function register(program: Command): void {
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
      const [{ openTableDb }, { snapshot }, { terminalProgress }] = await Promise.all([import('../../ts/tabledb.js'), import('../../ts/snapshot.js'), import('../../ts/progress.js')]);
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
      const [{ inspectSnapshot }, { renderSnapshot }] = await Promise.all([import('../../ts/snapcontents.js'), import('../views/snapshots.js')]);
      const report = inspectSnapshot(file);
      process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : renderSnapshot(report) + '\n');
    });
}
