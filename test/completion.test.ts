import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { SORT_FIELDS, STATE_FILTERS, TYPE_FILTERS } from '../harness/views/filters.js';
import { appshot, makeHome } from './helpers.js';

/*
 * The scripts `appshot completion bash|zsh` print, sourced into the real
 * shells and asked as the shells ask at a TAB. bash: COMP_WORDS and
 * COMP_CWORD, then the function the script registers, then COMPREPLY. zsh:
 * words and CURRENT, then the function; compsys's _describe, _files and
 * _command_names print what they were given (no terminal to draw a menu on).
 */

let home: string;
let files: string;
const scripts = { bash: '', zsh: '' };

beforeAll(() => {
  home = makeHome();
  // An application kept in the tables, and a template made from its snapshot.
  expect(appshot(home, ['run', '--keep', '--aid', 'web-1', '--', 'true']).code).toBe(0);
  expect(appshot(home, ['snapshot', 'web-1', '-o', join(home, 'web.snap')]).code).toBe(0);
  expect(appshot(home, ['template', 'create', 'webtpl', '--from', join(home, 'web.snap')]).code).toBe(0);
  files = join(home, 'files');
  mkdirSync(files);
  writeFileSync(join(files, 'saved.snap'), '');
  writeFileSync(join(files, 'other.txt'), '');
  // The scripts as the README loads them, kept in files for the many asks below.
  for (const shell of ['bash', 'zsh'] as const) {
    const r = appshot(home, ['completion', shell]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    scripts[shell] = join(home, `completion.${shell}`);
    writeFileSync(scripts[shell], r.stdout);
  }
});

/** Runs a shell, asynchronously: the asks take a while on a busy machine. */
async function shell(program: string, script: string, words: string[], env: NodeJS.ProcessEnv = { APPSHOT_HOME: home }) {
  try {
    const r = await promisify(execFile)(program, ['-c', script, program, ...words], { cwd: files, encoding: 'utf8', env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** What bash offers for the words after `appshot`, the last the one under the cursor. */
async function bash(...words: string[]): Promise<string[]> {
  const script = `source ${scripts.bash}; COMP_WORDS=(appshot "$@"); COMP_CWORD=$#; _appshot; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await shell('bash', script, words);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

/** What zsh offers: each line as _describe got it (value:description), or FILES, COMMANDS. */
async function zsh(...words: string[]): Promise<string[]> {
  const script = [
    'compdef() { print -r -- "compdef $*" }',
    '_describe() { local a=${@[-1]}; print -rl -- "${(@P)a}" }',
    '_files() { print FILES }',
    '_command_names() { print COMMANDS }',
    `source ${scripts.zsh}`,
    'words=(appshot "$@"); CURRENT=${#words}',
    '_appshot',
  ].join('\n');
  const r = await shell('zsh', script, words);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}
/** What an interactive zsh, compinit loaded and the script sourced, shows
 * after the typed line and a TAB (zsh/zpty gives it a terminal); waits
 * until `until` is shown, or 15 s. */
async function zshTab(typed: string, until: string): Promise<string> {
  const script = String.raw`setopt extendedglob
zmodload zsh/zpty
zpty -b z 'zsh -f -i'
zpty -w z 'PS1="> "; autoload -Uz compinit; compinit -u -D; source ${scripts.zsh}'
zpty -w -n z "$1"$'\t'
plain() { print -r -- "${'$'}{1//$'\e'\[[0-9;?]#[a-zA-Z]/}" }
out=
for i in {1..150}; do
  while zpty -r -t z line; do out+=$line; done
  [[ $(plain "$out") == *"$2"* ]] && break
  sleep 0.1
done
zpty -d z
plain "$out"`;
  const r = await shell('zsh', script, [typed, until]);
  return r.stdout;
}
const values = (lines: string[]) => lines.filter((l) => !l.startsWith('compdef ')).map((l) => l.replace(/(?<!\\):.*$/, ''));

describe('appshot completion bash', () => {
  it('completes the commands, and hides its own helper', async () => {
    const all = await bash('');
    for (const c of ['run', 'gc', 'tables', 'ps', 'snapshot', 'restore', 'template', 'check', 'completion']) expect(all).toContain(c);
    expect(all).not.toContain('__complete');
    expect(await bash('tem')).toEqual(['template']);
    expect(await bash('sn')).toEqual(['snapshot']);
  });

  it('completes subcommands', async () => {
    expect(await bash('template', '')).toEqual(['create', 'clone', 'list', 'inspect', 'rm', 'serve']);
    expect(await bash('template', 'c')).toEqual(['create', 'clone']);
    // snapshot takes an AID or its subcommand.
    expect(await bash('snapshot', '')).toEqual(['inspect', 'web-1']);
    expect(await bash('completion', '')).toEqual(['bash', 'zsh']);
  });

  it("completes a command's options, leaving out those given and those they conflict with", async () => {
    expect(await bash('tables', '--ty')).toEqual(['--type']);
    expect(await bash('ps', '--')).toEqual(['--aid', '--format', '--json', '--help']);
    expect(await bash('ps', '--json', '--')).toEqual(['--aid', '--help']);
    expect(await bash('template', 'clone', 'webtpl', '-')).toEqual(expect.arrayContaining(['-n', '--count', '--balance', '--port-range']));
    // bash splits 80:8080 into 80, :, 8080, and /a=/b into /a, =, /b.
    expect(await bash('run', '--publish', '80', ':', '8080', '--p')).toEqual(['--publish', '--port-range']);
    expect(await bash('run', '--redir', '/a', '=', '/b', '--k')).toEqual(['--keep']);
    expect(await bash('--v')).toEqual(['--version']);
  });

  it('completes the choices of --type, --state, --sort and --balance, also after =', async () => {
    expect(await bash('tables', '--type', '')).toEqual([...TYPE_FILTERS]);
    expect(await bash('tables', '--state', '')).toEqual([...STATE_FILTERS]);
    expect(await bash('tables', '--sort', '')).toEqual([...SORT_FIELDS]);
    expect(await bash('tables', '--apps', '--sort', 'c')).toEqual(['created']);
    expect(await bash('template', 'clone', 'webtpl', '--balance', '')).toEqual(['rr', 'lc']);
    expect(await bash('run', '--balance', 'l')).toEqual(['lc']);
    // bash splits --type=se into --type, =, se.
    expect(await bash('tables', '--type', '=')).toEqual([...TYPE_FILTERS]);
    expect(await bash('tables', '--type', '=', 'se')).toEqual(TYPE_FILTERS.filter((t) => t.startsWith('se')));
  });

  it('completes AIDs and template names from the home', async () => {
    expect(await bash('snapshot', 'w')).toEqual(['web-1']);
    expect(await bash('ps', '--aid', '')).toEqual(['web-1']);
    expect(await bash('tables', '--aid', 'we')).toEqual(['web-1']);
    // Not a template's own entry.
    expect(await bash('tables', '--aid', 't')).toEqual([]);
    expect(await bash('template', 'clone', '')).toEqual(['webtpl']);
    expect(await bash('template', 'inspect', 'w')).toEqual(['webtpl']);
    expect(await bash('template', 'rm', '--force', '')).toEqual(['webtpl']);
    // A new template's name is the user's to choose.
    expect(await bash('template', 'create', '')).toEqual([]);
  });

  it('completes paths where a file goes, and a program after --', async () => {
    expect(await bash('snapshot', 'inspect', 's')).toEqual(['saved.snap']);
    expect((await bash('restore', '')).sort()).toEqual(['other.txt', 'saved.snap']);
    expect(await bash('snapshot', 'web-1', '-o', 'o')).toEqual(['other.txt']);
    expect(await bash('template', 'create', 'x', '--from', 'sa')).toEqual(['saved.snap']);
    expect(await bash('run', '--', 'bas')).toContain('bash');
    expect(await bash('run', '--keep', '--', 'ls', 'ot')).toEqual(['other.txt']);
    expect(await bash('template', 'clone', 'webtpl', '-n', '2', '--', 'bas')).toContain('bash');
  });

  it('offers nothing for a value appshot cannot guess', async () => {
    expect(await bash('tables', '--limit', '')).toEqual([]);
    expect(await bash('nonesuch', '')).toEqual([]);
  });

  it('a home that cannot be read offers no AIDs, and no error', async () => {
    const r = await shell('bash', `source ${scripts.bash}; COMP_WORDS=(appshot ps --aid ''); COMP_CWORD=3; _appshot; echo "[\${COMPREPLY[*]}]"`, [], { APPSHOT_HOME: join(files, 'other.txt') });
    expect(r.stdout).toBe('[]\n');
    expect(r.stderr).toBe('');
  });
});

describe('appshot completion zsh', () => {
  it('completes in an interactive zsh with compinit, as a user gets it', async () => {
    expect(await zshTab('appshot tables --sta', 'appshot tables --state')).toContain('appshot tables --state');
    expect(await zshTab('appshot snapshot we', 'appshot snapshot web-1')).toContain('appshot snapshot web-1');
  });

  it('registers itself with compdef', async () => {
    expect(await zsh('')).toContain('compdef _appshot appshot');
  });

  it('completes commands and subcommands, with their descriptions', async () => {
    expect(values(await zsh('tem'))).toEqual(['template']);
    expect((await zsh('tem'))[1]).toMatch(/^template:\S/);
    expect(values(await zsh('template', ''))).toEqual(['create', 'clone', 'list', 'inspect', 'rm', 'serve']);
    expect(values(await zsh('snapshot', ''))).toEqual(['inspect', 'web-1']);
  });

  it('completes options and their choices, also as --option=value', async () => {
    expect(values(await zsh('tables', '--sta'))).toEqual(['--state']);
    expect(values(await zsh('tables', '--state', ''))).toEqual([...STATE_FILTERS]);
    expect(values(await zsh('tables', '--type=s'))).toEqual(TYPE_FILTERS.filter((t) => t.startsWith('s')).map((t) => `--type=${t}`));
    expect(values(await zsh('run', '--balance', ''))).toEqual(['rr', 'lc']);
  });

  it('completes AIDs, template names, files and programs', async () => {
    expect(values(await zsh('ps', '--aid', ''))).toEqual(['web-1']);
    expect(values(await zsh('template', 'clone', ''))).toEqual(['webtpl']);
    expect(values(await zsh('restore', ''))).toEqual(['FILES']);
    expect(values(await zsh('run', '--', ''))).toEqual(['COMMANDS']);
  });
});

describe('appshot completion, bad input', () => {
  it('refuses a shell it has no script for', async () => {
    const r = appshot(home, ['completion', 'fish']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/'fish' is invalid for argument 'shell'\. Allowed choices are bash, zsh/);
    expect(r.stdout).toBe('');
  });

  it('asks for the shell', async () => {
    const r = appshot(home, ['completion']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing required argument 'shell'/);
  });
});
