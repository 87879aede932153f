import type { Command } from '../commander.js';
import { checkAid } from '../../ts/aid.js';
import { resolveHome } from '../../ts/home.js';
import { type Format, formatOf } from '../views/format.js';
import { formatOption } from './common.js';

export function register(program: Command): void {
  program
    .command('ps')
    .description("show each application's processes (virtual and system PID, parent, state, command), its ports, the pools it publishes into, and the templates served on demand (their instances and why each started or was retired)")
    .usage('[--aid NAME] [--format plain|table|json|csv | --json]')
    .option('--aid <name>', 'only this application')
    .addOption(formatOption())
    .option('--json', 'print the processes as JSON for scripts (--format json)', false)
    .action(async (o: { aid?: string; json: boolean; format?: Format }) => {
      if (o.aid !== undefined) checkAid(o.aid);
      const format = formatOf(o);
      const [{ openTableDb }, { processRows, renderProcesses, unsupervisedNotes }, { poolRows, portRows, renderPools, renderPorts }, { requireApp }] = await Promise.all([
        import('../../ts/tabledb.js'),
        import('../views/processes.js'),
        import('../views/ports.js'),
        import('../views/apps.js'),
      ]);
      const t = openTableDb(resolveHome());
      if (o.aid !== undefined) requireApp(t, o.aid);
      // A row of a process that is gone is stale, not a process: not shown.
      const rows = [...processRows(t, { aid: o.aid })].filter((r) => r.state !== 'gone');
      if (format === 'json') {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      process.stdout.write(renderProcesses(rows, format) + '\n');
      if (format === 'csv') {
        // The processes alone, as --json; a note about them goes to stderr.
        for (const note of unsupervisedNotes(rows)) process.stderr.write(`appshot: ${note}\n`);
        return;
      }
      const ports = portRows(t, { aid: o.aid });
      if (ports.length) process.stdout.write('\nPorts:\n' + renderPorts(ports, format) + '\n');
      const pools = await poolRows(t, { aid: o.aid });
      if (pools.length) process.stdout.write('\nPools behind published ports:\n' + renderPools(pools, format) + '\n');
      const { serveRows, renderServe } = await import('../views/serve.js');
      const served = serveRows(t.home, { aid: o.aid });
      if (served.length) process.stdout.write('\nTemplates served on demand (appshot template serve):\n' + renderServe(served, format) + '\n');
    });
}
