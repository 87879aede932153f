import type { Command } from 'commander';
import { checkAid } from '../../ts/aid.js';
import { resolveHome } from '../../ts/home.js';

export function register(program: Command): void {
  program
    .command('ps')
    .description("show each application's processes (virtual and system PID, parent, state, command), its ports and the pools it publishes into")
    .option('--aid <name>', 'only this application')
    .option('--json', 'print the processes as JSON for scripts', false)
    .action(async (o: { aid?: string; json: boolean }) => {
      if (o.aid !== undefined) checkAid(o.aid);
      const [{ openTableDb }, { processRows, renderProcesses }, { poolRows, portRows, renderPools, renderPorts }] = await Promise.all([
        import('../../ts/tabledb.js'),
        import('../views/processes.js'),
        import('../views/ports.js'),
      ]);
      const t = openTableDb(resolveHome());
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
}
