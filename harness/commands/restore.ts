import { resolve } from 'node:path';
import type { Command } from '../commander.js';
import { checkAppAid } from '../../ts/aid.js';
import { ensureHome, resolveHome } from '../../ts/home.js';
import * as S from '../../tables/schema.js';
import { copyRate, mib, outcome } from './common.js';

export function register(program: Command): void {
  program
    .command('restore')
    .description(
      "restore an application from a snapshot under new system IDs: its IPC state, then its processes continuing where they were (a whole snapshot), or its command started again (an --ipc-only snapshot, or CMD given); all or nothing: a restore that fails leaves nothing behind",
    )
    .usage('FILE [--aid NAME] [--map-pages] [--json] [-- CMD [ARGS...]]')
    .argument('<file>', 'the snapshot')
    .argument('[cmd...]', "the command to start instead of the saved one (the snapshot's processes are then not restored, its IPC state is)")
    .option('--aid <name>', "the application ID (default: the snapshot's)")
    .option(
      '--map-pages',
      "map the processes' private memory from FILE copy-on-write instead of copying it: a faster restore whose time follows the pages the program touches, and restores of one file share its pages; the shim keeps the memory behaving as anonymous memory (pages given back read zeros); a process without the shim is copied. FILE must then stay as it is while they run (a rewrite shows through pages not yet written)",
      false,
    )
    .option('--json', "print what was restored as one line of JSON on stdout before the command starts (the command's own output follows it)", false)
    .action(async (file: string, cmd: string[], o: { aid?: string; mapPages: boolean; json: boolean }) => {
      if (o.aid !== undefined) checkAppAid(o.aid);
      (await import('../../ts/snapfile.js')).SnapReader.check(file); // before the home is made
      const home = ensureHome(resolveHome());
      const [{ openTableDb }, { restore }, { terminalProgress }, { runRegistered }] = await Promise.all([
        import('../../ts/tabledb.js'),
        import('../../ts/restore.js'),
        import('../../ts/progress.js'),
        import('../run.js'),
      ]);
      const t = openTableDb(home, { create: true });
      const given = cmd.length ? cmd : undefined;
      const r = restore(t, file, { aid: o.aid, command: given, progress: terminalProgress('restoring shared memory') });
      const m = r.meta;
      // A whole image's processes continue; with a command given, it starts instead.
      const image = m.whole && !given ? resolve(file) : undefined;
      if (o.json) {
        // One line, first: `| head -1` takes it apart from the application's output.
        const { meta: _meta, ...counts } = r;
        process.stdout.write(JSON.stringify({ ...counts, file, whole: !!image, command: given ?? m.command }) + '\n');
      } else {
        const procs = image ? `; its ${r.processes} process(es) are restored next, continuing where they were` : '';
        process.stderr.write(
          `appshot: restored '${r.aid}' from ${file}: ${r.sems} semaphore set(s), ${r.segments} segment(s) (${mib(r.shmBytes)}), ${r.queues} queue(s) (${r.messages} message(s)) in ${r.seconds.toFixed(2)} s${copyRate(r.shmBytes, r.copySeconds)}${procs}\n`,
        );
      }
      const opts = { home, keep: false, noIdentity: m.noIdentity, publish: m.publish, balance: 'rr' as const, portRange: S.PORT_RANGE_DEFAULT, redirects: m.redirects ?? [] };
      const as = image ? { image, mapPages: o.mapPages } : { firstVpid: m.firstVpid, ...(given ? {} : { env: m.env, cwd: m.cwd }) };
      outcome.exitCode = await runRegistered(t, r.aid, given ?? m.command, opts, as);
    });
}
