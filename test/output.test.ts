import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../ts/paths.js';
import { openTableDb, writeTxn } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { SEMTOOL, appshot, appshotAsync, appshotLater, makeHome, tablesJson, testRoot, waitFor, type Result } from './helpers.js';

// The tests' stdout is a pipe: what they read is what `appshot ... | grep`
// reads. A terminal is made with script(1) where one is needed.

const BOX = /[\u2500-\u257f]/;
const ESC = /\x1b/;

/** A home with a kept application 'k' (a semaphore set under key
 * 0x5e7a01), its snapshot and a template 't' of it: made once. */
let made: { home: string; snap: string } | undefined;
function fixture(): { home: string; snap: string } {
  if (made) return made;
  const home = makeHome();
  const run = appshot(home, ['run', '--aid', 'k', '--keep', '--', SEMTOOL, 'get', '0x5e7a01', '2', 'c']);
  expect(run.code, run.stderr).toBe(0);
  const snap = join(home, 'k.snap');
  expect(appshot(home, ['snapshot', 'k', '--ipc-only', '-o', snap]).code).toBe(0);
  expect(appshot(home, ['template', 'create', 't', '--from', snap]).code).toBe(0);
  made = { home, snap };
  return made;
}

afterAll(() => {
  if (!made) return;
  appshot(made.home, ['template', 'rm', 't', '--force']);
  appshot(made.home, ['gc', '--kept']);
});

/** Every table-printing command of the fixture, as arguments. */
function tableCommands(): string[][] {
  const { snap } = fixture();
  return [['tables'], ['tables', '--apps'], ['ps'], ['template', 'list'], ['template', 'inspect', 't'], ['snapshot', 'inspect', snap]];
}

/**
 * Runs appshot on a terminal (script(1) gives it a pty), returns what the
 * terminal showed. A command that runs until interrupted (--watch) gets
 * SIGINT, as from the terminal's ^C, once the terminal shows `until`: no
 * fixed wait, which a loaded machine can outlast.
 */
async function onTerminal(home: string, args: string[], env: NodeJS.ProcessEnv = {}, until?: RegExp): Promise<string> {
  const pidFile = join(mkdtempSync(join(testRoot(), 'tty-')), 'pid');
  const line = `echo $$ > '${pidFile}'; exec ` + [process.execPath, CLI_PATH, ...args].map((a) => `'${a}'`).join(' ');
  const tty = spawn('script', ['-qec', line, '/dev/null'], { env: { ...process.env, APPSHOT_HOME: home, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  tty.stdin!.end();
  let out = '';
  tty.stdout!.on('data', (d) => (out += d));
  const ended = new Promise<void>((resolve) => tty.on('close', () => resolve()));
  const appshotPid = () => Number(readFileSync(pidFile, 'latin1'));
  try {
    if (until) {
      await waitFor(() => out, until);
      process.kill(appshotPid(), 'SIGINT');
    }
    await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error(`appshot ${args.join(' ')} on a terminal did not end within 20 s:\n${out}`)), 20_000))]);
  } finally {
    if (tty.exitCode === null) {
      tty.kill('SIGKILL');
      try {
        process.kill(appshotPid(), 'SIGKILL');
      } catch {
        /* ended, or never started */
      }
    }
  }
  return out;
}

describe('output into a pipe, and --format', () => {
  it('a table into a pipe is plain columns under a header line: no box drawing, no escape codes', async () => {
    const { home } = fixture();
    const live = appshotAsync(home, ['run', '--aid', 'live', '--', SEMTOOL, 'get', '0x5e7a02', '1', 'c', 'pid', 'sleep', '100000']);
    await waitFor(live.out, /pid/);
    for (const args of [...tableCommands(), ['ps', '--aid', 'live']]) {
      const r = appshot(home, args, { FORCE_COLOR: '1' });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stdout, args.join(' ')).not.toMatch(BOX);
      expect(r.stdout, args.join(' ')).not.toMatch(ESC);
    }
    // Aligned: each column starts where its header does.
    const text = appshot(home, ['tables', '--aid', 'k']).stdout.split('\n');
    expect(text[0]).toMatch(/^AID +type +virtual +system +key +creator +created$/);
    const sem = text.find((l) => /^k +sem /.test(l))!;
    for (const col of ['type', 'virtual', 'system', 'key', 'creator', 'created']) expect(sem[text[0].indexOf(col) - 1], col).toBe(' ');
    expect(sem.slice(text[0].indexOf('key')).startsWith('0x005e7a01')).toBe(true);
    const ps = appshot(home, ['ps', '--aid', 'live']).stdout.split('\n');
    expect(ps[0]).toMatch(/^AID +VPID +SPID +PPID +STAT +COMMAND$/);
    expect(ps[1]).toMatch(/^live +\d+ +\d+ +\d+ +[RS] +\S*semtool get 0x5e7a02/);
    expect(ps[1].indexOf('semtool')).toBeGreaterThan(ps[0].indexOf('COMMAND'));
  });

  it('--format table draws the box even into a pipe; never colour, NO_COLOR or not', () => {
    const { home } = fixture();
    for (const args of tableCommands()) {
      for (const env of [{ NO_COLOR: '1' }, { FORCE_COLOR: '1' }]) {
        const r = appshot(home, [...args, '--format', 'table'], env);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        expect(r.stdout, args.join(' ')).toMatch(/┌─+┬/);
        expect(r.stdout, args.join(' ')).not.toMatch(ESC);
      }
    }
    // One rule under the header, none between rows.
    const boxed = appshot(home, ['tables', '--format', 'table']).stdout.split('\n');
    expect(boxed.filter((l) => l.startsWith('├')).length).toBe(1);
  });

  it('on a terminal the default is the box; NO_COLOR leaves no escape code in it', async () => {
    const { home } = fixture();
    const out = await onTerminal(home, ['tables', '--aid', 'k'], { NO_COLOR: '1' });
    expect(out).toMatch(/│ AID +│ type +│/);
    expect(out).not.toMatch(ESC);
    expect(await onTerminal(home, ['tables', '--aid', 'k', '--format', 'plain'])).toMatch(/AID +type +virtual/);
  });

  it('--format json is --json, --format csv is --csv', () => {
    const { home } = fixture();
    for (const args of tableCommands()) {
      const json = appshot(home, [...args, '--json']);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout), args.join(' ')).toEqual(JSON.parse(appshot(home, [...args, '--format', 'json']).stdout));
    }
    for (const args of [['tables'], ['tables', '--apps']]) expect(appshot(home, [...args, '--format', 'csv']).stdout).toBe(appshot(home, [...args, '--csv']).stdout);
    // A published port's row carries its pool either way.
    const pub = makeHome();
    expect(appshot(pub, ['run', '--aid', 'p', '--keep', '--publish', '18377:8080', '--', 'true']).code).toBe(0);
    const rows = JSON.parse(appshot(pub, ['tables', '--format', 'json', '--type', 'publish']).stdout);
    expect(rows).toEqual([expect.objectContaining({ aid: 'p', type: 'publish', pool: expect.objectContaining({ public: 18377, running: false }) })]);
    expect(rows).toEqual(JSON.parse(appshot(pub, ['tables', '--json', '--type', 'publish']).stdout));
    appshot(pub, ['gc', '--kept']);
    expect(appshot(home, ['tables', '--apps', '--format', 'csv']).stdout).toMatch(/^aid,state,processes,created,template,command\n(.*\n)*k,kept,0,/);
    expect(appshot(home, ['ps', '--format', 'csv']).stdout).toMatch(/^aid,vpid,spid,ppid,stat,command\n/);
    expect(appshot(home, ['template', 'inspect', 't', '--format', 'csv']).stdout).toMatch(/^resource,class,size,why\nsem \d+,duplicate,/);
    expect(appshot(home, ['snapshot', 'inspect', fixture().snap, '--format', 'csv']).stdout).toMatch(/^type,virtual,key,size,mode\nsem,\d+,0x005e7a01,2 semaphores,0600\n$/);
  });

  it('--watch into a pipe writes one frame after another without terminal codes; on a terminal it redraws in place', async () => {
    const { home } = fixture();
    const w = appshotAsync(home, ['tables', '--watch', '0.2', '--aid', 'k']);
    await waitFor(w.out, /(appshot tables, every 0\.2 s[^]*){3}/);
    w.child.kill('SIGINT');
    const r = await w.done;
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(ESC);
    expect(r.stdout).not.toMatch(BOX);
    expect(r.stdout).toMatch(/\n\nappshot tables, every 0\.2 s .*\nAID +type +virtual/);
    const tty = await onTerminal(home, ['tables', '--watch', '0.2', '--aid', 'k'], {}, /(\x1b\[H\x1b\[2J[^]*){2}/);
    expect(tty).toMatch(/(\x1b\[H\x1b\[2J[^]*){2}/);
    expect(tty).toMatch(/│ AID +│ type/);
  });
});

describe('flags that do not combine', () => {
  const refused: [string[], string, string][] = [
    [['tables', '--watch', '--verify'], '--verify', '--watch'],
    [['tables', '--apps', '--type', 'sem'], '--apps', '--type'],
    [['tables', '--apps', '--vrid', '1'], '--apps', '--vrid'],
    [['tables', '--apps', '--sort', 'aid'], '--apps', '--sort'],
    [['tables', '--srid', '1', '--vrid', '1'], '--srid', '--vrid'],
    [['tables', '--srid', '1', '--aid', 'k'], '--srid', '--aid'],
    [['tables', '--verify', '--aid', 'k'], '--verify', '--aid'],
    [['tables', '--verify', '--page', '2'], '--verify', '--page'],
    [['tables', '--verify', '--csv'], '--verify', '--csv'],
    [['tables', '--repair', '--apps'], '--repair', '--apps'],
    [['tables', '--json', '--csv'], '--json', '--csv'],
    [['tables', '--watch', '--json'], '--watch', '--json'],
    [['tables', '--format', 'json', '--json'], '--format', '--json'],
    [['tables', '--format', 'plain', '--csv'], '--format', '--csv'],
    [['ps', '--format', 'csv', '--json'], '--format', '--json'],
    [['template', 'list', '--format', 'table', '--json'], '--format', '--json'],
    [['template', 'inspect', 't', '--format', 'table', '--json'], '--format', '--json'],
    [['snapshot', 'inspect', 'x.snap', '--format', 'table', '--json'], '--format', '--json'],
    // Hanging on a value, so checked in the command.
    [['tables', '--desc'], '--desc', '--sort'],
    [['tables', '--verify', '--format', 'table'], '--verify', '--format table'],
    [['tables', '--watch', '--format', 'csv'], '--watch', '--format csv'],
  ];

  it.each(refused)('%j: exit 2, naming both, nothing printed', (args, one, other) => {
    const home = fixture().home;
    const r = appshot(home, args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(one);
    expect(r.stderr).toContain(other);
    expect(r.stdout).toBe('');
  });

  it('flags that do combine still work: --verify --json, --repair, --sort --desc, --srid --type, --apps --state', () => {
    const home = fixture().home;
    expect(appshot(home, ['tables', '--verify', '--json']).code).toBe(0);
    expect(appshot(home, ['tables', '--repair']).code).toBe(0);
    expect(appshot(home, ['tables', '--sort', 'system', '--desc']).code).toBe(0);
    const sem = tablesJson(home, ['--aid', 'k', '--type', 'sem'])[0];
    expect(tablesJson(home, ['--srid', String(sem.system), '--type', 'sem'])).toEqual([sem]);
    expect(appshot(home, ['tables', '--apps', '--state', 'kept', '--aid', 'k']).stdout).toMatch(/^k +kept/m);
  });
});

describe('an application that does not exist, a page past the end', () => {
  it('--aid of no application: exit 1, saying so and where they are listed', () => {
    const home = fixture().home;
    for (const args of [['tables'], ['tables', '--apps'], ['tables', '--json'], ['ps'], ['ps', '--json']]) {
      const r = appshot(home, [...args, '--aid', 'nosuch']);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toBe(`appshot: no application 'nosuch' in ${home}; appshot tables --apps lists them\n`);
      expect(r.stdout).toBe('');
    }
  });

  it('--page past the last page: exit 2, naming the last page', () => {
    const home = fixture().home;
    const rows = tablesJson(home).length;
    expect(appshot(home, ['tables', '--limit', '1', '--page', String(rows)]).code).toBe(0);
    for (const extra of [[], ['--json'], ['--csv']]) {
      const r = appshot(home, ['tables', '--limit', '1', '--page', '99', ...extra]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`appshot: page 99 is past the last page, ${rows} (${rows} row(s) at 1 a page)\n`);
      expect(r.stdout).toBe('');
    }
    const filtered = appshot(home, ['tables', '--type', 'sem', '--aid', 'k', '--limit', '10', '--page', '3']);
    expect(filtered.stderr).toBe('appshot: page 3 is past the last page, 1 (1 row(s) at 10 a page)\n');
    const apps = tablesJson(home, ['--apps']).length;
    const r = appshot(home, ['tables', '--apps', '--limit', '1', '--page', '99']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`page 99 is past the last page, ${apps}`);
    const all = appshot(home, ['tables', '--json', '--page', '2']);
    expect(all.code).toBe(2);
    expect(all.stderr).toMatch(/--page 2: without --limit every row is on page 1; give --limit N/);
    const empty = makeHome();
    expect(appshot(empty, ['run', '--', 'true']).code).toBe(0); // tables, and no rows left
    const none = appshot(empty, ['tables', '--page', '2']);
    expect(none.stderr).toBe('appshot: page 2 is past the last page, 1 (no rows)\n');
  });
});

describe('--json on every command that reports a result', () => {
  it('snapshot, template create, template clone, restore, gc: the summary as JSON', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--aid', 'j', '--keep', '--', SEMTOOL, 'get', '0x5e7a03', '3', 'c']).code).toBe(0);
    const file = join(home, 'j.snap');
    const s = appshot(home, ['snapshot', 'j', '--ipc-only', '-o', file, '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ aid: 'j', file, sems: 1, segments: 0, queues: 0, messages: 0, processes: 0, stopped: false, seconds: expect.any(Number) });

    const c = appshot(home, ['template', 'create', 'jt', '--from', file, '--json']);
    expect(c.code, c.stderr).toBe(0);
    const tpl = JSON.parse(c.stdout);
    expect(tpl).toMatchObject({ name: 'jt', snapshot: expect.objectContaining({ file }), clones: [] });
    expect(tpl.resources.map((x: { class: string }) => x.class)).toContain('duplicate');
    expect(tpl).toEqual(JSON.parse(appshot(home, ['template', 'inspect', 'jt', '--json']).stdout));

    const k = appshot(home, ['template', 'clone', 'jt', '-n', '2', '--json', '--', 'true']);
    expect(k.code, k.stderr).toBe(0);
    const clones = JSON.parse(k.stdout);
    expect(clones).toMatchObject({ template: 'jt', requested: 2, error: null });
    expect(clones.clones).toEqual([
      expect.objectContaining({ aid: 'jt-1', command: ['true'], sems: 1, readyMs: expect.any(Number), ports: [] }),
      expect.objectContaining({ aid: 'jt-2', command: ['true'], sems: 1 }),
    ]);

    // The summary is the first line; the application's output follows.
    const r = appshot(home, ['restore', file, '--aid', 'back', '--json', '--', 'echo', 'from the application']);
    expect(r.code, r.stderr).toBe(0);
    const [first, ...rest] = r.stdout.trimEnd().split('\n');
    expect(JSON.parse(first)).toMatchObject({ aid: 'back', file, sems: 1, segments: 0, command: ['echo', 'from the application'] });
    expect(rest).toEqual(['from the application']);
    expect(r.stderr).not.toMatch(/restored 'back'/);

    const g = appshot(home, ['gc', '--json', '--kept']);
    expect(g.code).toBe(0);
    expect(JSON.parse(g.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ aid: 'j', rows: expect.any(Number) })]));
  });

  it('tables --verify --json: the findings, with the same exit code', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--aid', 'v', '--keep', '--', SEMTOOL, 'get', '0x5e7a04', '1', 'c']).code).toBe(0);
    const ok = appshot(home, ['tables', '--verify', '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual([]);
    const t = openTableDb(home);
    writeTxn(t, () => {
      t.fwd.putSync(S.fwdKey('v', S.RT.sem, 4242), S.fwdVal({ srid: 987654, vkey: 0, skey: 0, creator: 1, createdMs: 1 }));
      t.rev.putSync(S.revKey(t.node, S.RT.sem, 987654), S.revVal(4242, 'v'));
    });
    t.env.close();
    const bad = appshot(home, ['tables', '--verify', '--json']);
    expect(bad.code).toBe(5);
    expect(JSON.parse(bad.stdout)).toEqual([{ problem: expect.stringContaining('v sem 4242 -> 987654: the kernel has no semaphore set 987654') }]);
    const fixed = appshot(home, ['tables', '--repair', '--json']);
    expect(fixed.code).toBe(0);
    expect(JSON.parse(fixed.stdout)).toEqual([{ problem: expect.stringContaining('v sem 4242'), repaired: expect.any(String) }]);
    appshot(home, ['gc', '--kept']);
  });
});

describe('help', () => {
  /** Each command path's --help, run once: the walk below and the checks read the same. */
  const helps = new Map<string, Promise<Result>>();
  function help(path: string[]): Promise<Result> {
    const key = path.join(' ');
    if (!helps.has(key)) helps.set(key, appshotLater(makeHome(), [...path, '--help']));
    return helps.get(key)!;
  }

  /** Every command path, found from the help itself: new commands are checked too. */
  async function commands(path: string[] = []): Promise<string[][]> {
    const section = (await help(path)).stdout.split(/^Commands:\n/m)[1] ?? '';
    const names = [...section.matchAll(/^ {2}(\w[\w-]*)/gm)].map((m) => m[1]).filter((n) => n !== 'help');
    const all: string[][] = [];
    for (const n of names) all.push([...path, n], ...(await commands([...path, n])));
    return all;
  }

  it('cites no figure of a document users do not have; each usage line names each option, or says [options]', async () => {
    const all = await commands();
    expect(all).toEqual(expect.arrayContaining([['tables'], ['ps'], ['snapshot', 'inspect'], ['template', 'clone'], ['restore'], ['gc'], ['run']]));
    for (const path of [[], ...all]) {
      const r = await help(path);
      expect(r.code).toBe(0);
      expect(r.stdout, path.join(' ')).not.toMatch(/FIG/i);
      const usage = r.stdout.split(/\n\n/)[0];
      if (usage.includes('[options]')) continue;
      const options = (r.stdout.split(/^Options:\n/m)[1] ?? '').split(/\n\n/)[0];
      // An option with a short name may be given by either.
      for (const [, short, long] of options.matchAll(/^ {2}(?:(-\w), )?(--[\w-]+)/gm)) {
        if (long === '--help') continue;
        const named = usage.includes(long) || (short !== undefined && new RegExp(`(^|[\\s\\[|])${short}\\b`).test(usage));
        expect(named, `${path.join(' ')}: the usage line lacks ${long}:\n${usage}`).toBe(true);
      }
    }
  });
});
