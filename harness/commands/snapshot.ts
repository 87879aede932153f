import { type Command, Option } from '../commander.js';
import { checkAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';
import { type Format, formatOf } from '../views/format.js';
import { JSON_HELP, copyRate, formatOption, mib } from './common.js';

export function register(program: Command): void {
  const snapshotCommand = program
    .command('snapshot')
    .description(
      "capture a running application whole into FILE, to restore it later continuing where it was: every process (memory, threads, descriptors, signals), and its state through its virtual IDs (tables, semaphore values, segment contents, queued messages, ports); with --ipc-only, the IPC state alone (a restore starts the command again)",
    )
    .usage('AID -o FILE [--stop] [--ipc-only] [--json]\n       appshot snapshot inspect FILE [--format plain|table|json|csv | --json]')
    .argument('<aid>', 'the application')
    .option('-o, --output <file>', 'where to write the snapshot (required)')
    .option('--stop', 'then end the application: its processes and kernel objects', false)
    .option('--ipc-only', "capture the IPC state alone, not the processes (the processes are SIGSTOPped meanwhile; a restore starts the command again): for an application that cannot be captured whole", false)
    .option('--json', JSON_HELP + ': what was captured, the file, the time', false)
    .action(async (aid: string, o: { output?: string; stop: boolean; ipcOnly: boolean; json: boolean }) => {
      checkAid(aid);
      if (!o.output) throw new AppshotError(`say where to write the snapshot: appshot snapshot ${aid} -o FILE`, EXIT.usage);
      const [{ openTableDb }, { snapshot }, { terminalProgress }] = await Promise.all([import('../../ts/tabledb.js'), import('../../ts/snapshot.js'), import('../../ts/progress.js')]);
      const t = openTableDb(resolveHome());
      const s = await snapshot(t, aid, o.output, { stop: o.stop, ipcOnly: o.ipcOnly, progress: terminalProgress('capturing shared memory') });
      if (o.json) {
        process.stdout.write(JSON.stringify({ aid, ...s, stopped: o.stop }, null, 2) + '\n');
        return;
      }
      // Without --ipc-only an application with no process left (kept
      // state) still gets a snapshot, of its IPC state: say so.
      const what = s.whole ? `${s.processes} process(es) whole (memory, threads, descriptors), ` : o.ipcOnly ? '' : 'no process running, so the IPC state alone (a restore starts the command again), ';
      process.stdout.write(
        `snapshot of '${aid}' written to ${o.output}: ${what}${s.sems} semaphore set(s), ${s.segments} segment(s) (${mib(s.shmBytes)}), ${s.queues} queue(s) (${s.messages} message(s)), ${s.processes} process(es) ${o.stop ? 'ended' : 'resumed'}; ${s.seconds.toFixed(2)} s${copyRate(s.shmBytes, s.copySeconds)}\n`,
      );
    });

  snapshotCommand
    .command('inspect')
    .description('list what a snapshot holds, checking every section, without restoring it')
    .usage('FILE [--format plain|table|json|csv | --json]')
    .argument('<file>', 'the snapshot')
    .addOption(formatOption())
    .addOption(new Option('--json', 'print JSON for scripts (--format json)').default(false))
    .action(async (file: string, o: { json: boolean; format?: Format }) => {
      const format = formatOf(o);
      const [{ inspectSnapshot }, { renderSnapshot }] = await Promise.all([import('../../ts/snapcontents.js'), import('../views/snapshots.js')]);
      const report = inspectSnapshot(file);
      process.stdout.write((format === 'json' ? JSON.stringify(report, null, 2) : renderSnapshot(report, format)) + '\n');
    });
}
