import { type Command, Option } from '../commander.js';
import { checkAppAid } from '../../ts/aid.js';
import { AppshotError, EXIT } from '../../ts/errors.js';
import { resolveHome } from '../../ts/home.js';
import type { Balance, Publication } from '../../ts/pool.js';
import * as S from '../../tables/schema.js';
import { collect, outcome } from './common.js';

interface RunFlags {
  aid?: string;
  keep: boolean;
  identity: boolean;
  publish: string[];
  balance: Balance;
  portRange: string;
  redir: string[];
  trap: boolean;
}

/** Each --redir, checked alone and then as a list, before anything runs. */
async function redirections(specs: string[], home: string) {
  const { checkRedirects, parseRedirect } = await import('../../ts/redirect.js');
  return checkRedirects(specs.map(parseRedirect), home);
}

/** Each --publish, checked: one public port and one virtual port once each. */
async function publications(specs: string[]): Promise<Publication[]> {
  const { parsePublish } = await import('../../ts/pool.js');
  const list = specs.map(parsePublish);
  for (const key of ['public', 'virtual'] as const) {
    const seen = new Set<number>();
    for (const p of list) {
      if (seen.has(p[key])) throw new AppshotError(`--publish names ${key} port ${p[key]} twice; give each port once`, EXIT.usage);
      seen.add(p[key]);
    }
  }
  return list;
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run CMD as an application whose IPC IDs and keys are virtual')
    .usage('[--aid NAME] [--keep] [--no-identity] [--publish [IP:]PUBLIC:VIRTUAL]... [--balance rr|lc] [--port-range LO-HI] [--redir FROM=TO]... [--no-trap] -- CMD [ARGS...]')
    .option('--aid <name>', 'application ID (default: a new one, app-N)')
    .option('--keep', 'leave kernel objects and tables when the application ends, for a later snapshot', false)
    .addOption(new Option('--no-identity', 'never let a virtual ID equal its system ID (to test what a restored application sees)'))
    .option('--publish <[ip:]public:virtual>', "reach the application's TCP port VIRTUAL at system port PUBLIC, on address IP if given, else on the address the program binds; applications publishing one port share it as a pool (repeatable)", collect, [])
    .addOption(new Option('--balance <policy>', 'how a pool picks the instance for each connection').choices(['rr', 'lc']).default('rr'))
    .option('--port-range <lo-hi>', 'system ports for virtual ports whose own number is taken', `${S.PORT_RANGE_DEFAULT.lo}-${S.PORT_RANGE_DEFAULT.hi}`)
    .option('--redir <from=to>', 'in every process of the application, paths at or under FROM lead to the same place under TO (absolute paths; repeatable, the first that covers a path applies)', collect, [])
    .addOption(new Option('--no-trap', "do not trap the application's raw system calls (needed for a set-user-ID program to gain its privilege when appshot runs as a user without CAP_SYS_ADMIN); raw calls then go untranslated"))
    .argument('<cmd...>', 'the command to run and its arguments')
    .passThroughOptions()
    .action(async (cmd: string[], o: RunFlags) => {
      if (o.aid !== undefined) checkAppAid(o.aid);
      const { checkPoolSteer, parsePortRange } = await import('../../ts/pool.js');
      const publish = await publications(o.publish);
      if (publish.length) checkPoolSteer();
      const portRange = parsePortRange(o.portRange);
      const home = resolveHome();
      const redirects = await redirections(o.redir, home);
      const { run } = await import('../run.js');
      outcome.exitCode = await run(cmd, { aid: o.aid, keep: o.keep, noIdentity: !o.identity, home, publish, balance: o.balance, portRange, redirects, trap: o.trap });
    });
}
