import type { Command } from '../commander.js';
import { EXIT } from '../../ts/errors.js';
import { outcome } from './common.js';

export function register(program: Command): void {
  program
    .command('check')
    .description("what this kernel and machine allow appshot, each item with a verdict (ok, limited, missing) and why, like criu check; exit 1 when something today's commands need is missing")
    .usage('[--json]')
    .option('--json', 'print the items as JSON for scripts', false)
    .action(async (o: { json: boolean }) => {
      const { machineCheck } = await import('../../ts/machine.js');
      const items = machineCheck();
      const missing = items.filter((i) => i.required && i.verdict === 'missing');
      outcome.exitCode = missing.length ? EXIT.failure : EXIT.ok;
      if (o.json) {
        process.stdout.write(JSON.stringify({ ok: !missing.length, items }, null, 2) + '\n');
        return;
      }
      const nameWidth = Math.max(...items.map((i) => i.name.length));
      for (const i of items) {
        const later = i.required ? '' : ` [for ${i.neededFor}]`;
        process.stdout.write(`${i.verdict.padEnd(8)} ${i.name.padEnd(nameWidth)}  ${i.why}${i.verdict === 'ok' ? '' : later}\n`);
        if (i.fix && i.verdict !== 'ok') process.stdout.write(`${''.padEnd(8 + nameWidth + 3)}fix: ${i.fix}\n`);
      }
      const limited = items.filter((i) => i.verdict === 'limited').length;
      if (missing.length)
        process.stdout.write(`\nmissing for today's commands: ${missing.map((i) => i.name).join(', ')}; see each one's fix above\n`);
      else process.stdout.write(`\nlooks good: everything today's commands need is here${limited ? ` (${limited} item(s) limited)` : ''}\n`);
    });
}
