import { readdirSync } from 'node:fs';
import type { Argument, Command, Option } from './commander.js';
import { resolveHome, TEMPLATE_AID_PREFIX, templatesDir } from '../ts/home.js';
import { CLI_PATH } from '../ts/paths.js';
import { appRows, openTableDb } from '../ts/tabledb.js';

/*
 * Shell completion from the program's own definitions: the commands,
 * options, choices and arguments commander holds, walked at each TAB by the
 * hidden `appshot __complete SHELL -- WORDS...`, which the sourced script
 * calls. Its first line says what kind of answer it is: `words` (the lines
 * after it), `files` (the shell completes a path) or `commands` (a program
 * name, after `--`). Existing AIDs and template names come from the home.
 */

export type Shell = 'bash' | 'zsh';
export const SHELLS: Shell[] = ['bash', 'zsh'];

type Answer = { kind: 'words'; words: { value: string; description: string }[] } | { kind: 'files' | 'commands' };

const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function completionScript(shell: Shell): string {
  const self = sq(CLI_PATH);
  if (shell === 'bash')
    return `# bash completion for appshot, made by 'appshot completion bash'.
# Load it with: source <(appshot completion bash)   (in ~/.bashrc to keep it)
_appshot() {
  local IFS=$'\\n' kind cur=\${COMP_WORDS[COMP_CWORD]}
  local -a reply
  reply=($(${self} __complete bash -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)) || return 0
  kind=\${reply[0]}
  [[ $cur == = ]] && cur=
  case $kind in
    files) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
    commands) COMPREPLY=($(compgen -c -- "$cur")) ;;
    *) COMPREPLY=("\${reply[@]:1}") ;;
  esac
}
complete -F _appshot appshot
`;
  return `#compdef appshot
# zsh completion for appshot, made by 'appshot completion zsh'.
# Load it after compinit with: source <(appshot completion zsh)   (in ~/.zshrc to keep it)
_appshot() {
  local -a reply
  local kind
  reply=("\${(@f)$(${self} __complete zsh -- "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  kind=\${reply[1]}
  reply=("\${(@)reply[2,-1]}")
  case $kind in
    files) _files ;;
    commands) _command_names -e ;;
    words) (( \${#reply} )) && _describe -t values appshot reply ;;
  esac
}
if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _appshot "$@"
else
  compdef _appshot appshot
fi
`;
}

/** What the user typed after `appshot`, the last word the one being completed. */
export function complete(program: Command, shell: Shell, typed: string[]): string {
  const answer = answerFor(program, shell, typed);
  if (answer.kind !== 'words') return `${answer.kind}\n`;
  const lines = answer.words.map(({ value, description }) =>
    shell === 'zsh' ? `${value.replaceAll('\\', '\\\\').replaceAll(':', '\\:')}${description ? `:${oneLine(description)}` : ''}` : value,
  );
  return ['words', ...lines].join('\n') + '\n';
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').split(/[:;] /)[0].slice(0, 80);

/** The subcommands --help lists, less its own `help`. */
const visible = (cmd: Command) =>
  cmd
    .createHelp()
    .visibleCommands(cmd)
    .filter((c) => c.name() !== 'help');

function optionsOf(cmd: Command): Option[] {
  const help = cmd.createHelp();
  return help.visibleOptions(cmd);
}

function findOption(cmd: Command, flag: string): Option | undefined {
  return optionsOf(cmd).find((o) => o.long === flag || o.short === flag);
}

const takesValue = (o: Option) => o.required || o.optional;

function answerFor(program: Command, shell: Shell, typed: string[]): Answer {
  // bash splits words at = and : (--type=sem into --type, =, sem; --publish
  // 80:8080 into 80, :, 8080): put them back together.
  const words: string[] = [];
  for (let i = 0; i < typed.length; i++) {
    if (shell === 'bash' && (typed[i] === '=' || typed[i] === ':') && words.length) {
      words[words.length - 1] += typed[i] + (typed[i + 1] ?? '');
      i++;
    } else words.push(typed[i]);
  }
  const cur = words.at(-1) ?? '';
  const before = words.slice(0, -1);

  let cmd = program;
  let positional = 0;
  let dashDash = false;
  const given = new Set<string>();
  for (let i = 0; i < before.length; i++) {
    const w = before[i];
    if (dashDash || (positional > 0 && passesThrough(cmd) && restIsCommand(cmd, positional))) {
      positional++;
      continue;
    }
    if (w === '--') {
      dashDash = true;
      continue;
    }
    if (w.startsWith('-') && w.length > 1) {
      const [flag] = w.split('=', 1);
      const o = findOption(cmd, flag);
      if (o) given.add(o.long ?? o.short ?? flag);
      if (o && takesValue(o) && !w.includes('=') && i + 1 < before.length && (o.required || !before[i + 1].startsWith('-'))) i++;
      continue;
    }
    const sub = positional === 0 ? visible(cmd).find((c) => c.name() === w || c.aliases().includes(w)) : undefined;
    if (sub) {
      cmd = sub;
      given.clear();
      continue;
    }
    positional++;
  }

  // The value of an option: --type s<TAB>, or --type=s<TAB>.
  const eq = cur.startsWith('--') ? cur.indexOf('=') : -1;
  if (eq > 0) {
    const o = findOption(cmd, cur.slice(0, eq));
    if (!o) return none();
    // bash completes the word after '=', zsh the whole --type=s.
    const prefix = shell === 'zsh' ? cur.slice(0, eq + 1) : '';
    return withPrefix(valuesOf(o), cur.slice(eq + 1), prefix);
  }
  const last = before.at(-1);
  if (!dashDash && last?.startsWith('-') && !last.includes('=')) {
    const o = findOption(cmd, last);
    if (o?.required) return withPrefix(valuesOf(o), cur);
  }

  if (dashDash || (positional > 0 && passesThrough(cmd) && restIsCommand(cmd, positional))) return positionalOf(cmd, positional, cur);
  if (cur.startsWith('-')) {
    const givenOptions = optionsOf(cmd).filter((o) => given.has(o.long ?? o.short ?? ''));
    // commander refuses an option beside one it conflicts with: not offered either.
    const conflictsOf = (o: Option) => (o as Option & { conflictsWith?: string[] }).conflictsWith ?? []; // set by .conflicts(), untyped
    const conflicts = (o: Option) =>
      givenOptions.some((g) => conflictsOf(g).includes(o.attributeName()) || conflictsOf(o).includes(g.attributeName()));
    const words = optionsOf(cmd)
      .filter((o) => (!given.has(o.long ?? o.short ?? '') || repeatable(o)) && !conflicts(o))
      .flatMap((o) => [o.long, cur.startsWith('--') ? undefined : o.short].filter((f): f is string => !!f).map((f) => ({ value: f, description: o.description })));
    return filter(words, cur);
  }
  const arg = positionalOf(cmd, positional, cur);
  if (positional === 0 && visible(cmd).length) {
    // snapshot takes an AID or its subcommand inspect.
    const subcommands = visible(cmd).map((c) => ({ value: c.name(), description: c.description() }));
    return filter([...subcommands, ...(arg.kind === 'words' ? arg.words : [])], cur);
  }
  return arg;
}

const none = (): Answer => ({ kind: 'words', words: [] });

function filter(words: { value: string; description: string }[], cur: string): Answer {
  return { kind: 'words', words: words.filter((w) => w.value.startsWith(cur)) };
}

function withPrefix(a: Answer, cur: string, prefix = ''): Answer {
  if (a.kind !== 'words') return a;
  return { kind: 'words', words: a.words.filter((w) => w.value.startsWith(cur)).map((w) => ({ ...w, value: prefix + w.value })) };
}

/** A repeatable option (--publish, --redir) is offered again. */
const repeatable = (o: Option) => o.variadic || Array.isArray(o.defaultValue);

/** Whether the options after the command's first argument are the
 * command line's own (run's: `appshot run ls -l`); commander has no public
 * reader of passThroughOptions(). */
const passesThrough = (cmd: Command) => (cmd as unknown as { _passThroughOptions: boolean })._passThroughOptions;

/** Whether the command's positional argument at index is its trailing
 * command line (run's, restore's, clone's [cmd...]). */
function restIsCommand(cmd: Command, index: number): boolean {
  const args = cmd.registeredArguments;
  const last = args.at(-1);
  return !!last && last.variadic && last.name() === 'cmd' && index >= args.length - 1;
}

function positionalOf(cmd: Command, index: number, cur: string): Answer {
  const args: readonly Argument[] = cmd.registeredArguments;
  const arg = index < args.length ? args[index] : args.at(-1)?.variadic ? args.at(-1) : undefined;
  if (!arg) return none();
  if (arg.name() === 'cmd') return index === args.length - 1 ? { kind: 'commands' } : { kind: 'files' };
  if (arg.argChoices) return filter(arg.argChoices.map((c) => ({ value: c, description: '' })), cur);
  if (arg.name() === 'aid') return filter(applications(), cur);
  if (arg.name() === 'file') return { kind: 'files' };
  // A template's name, except the new one template create makes.
  if (arg.name() === 'name' && cmd.parent?.name() === 'template' && cmd.name() !== 'create') return filter(templates(), cur);
  return none();
}

function valuesOf(o: Option): Answer {
  if (o.argChoices) return { kind: 'words', words: o.argChoices.map((c) => ({ value: c, description: '' })) };
  if (o.attributeName() === 'aid') return { kind: 'words', words: applications() };
  if (/<(file|snapshot|dir)>/.test(o.flags)) return { kind: 'files' };
  return none();
}

/** The applications of the home, read straight from its tables: a TAB must
 * answer at once, and a home that cannot be read has none to offer. */
function applications(): { value: string; description: string }[] {
  try {
    const t = openTableDb(resolveHome());
    try {
      return [...appRows(t)].filter(({ aid }) => !aid.startsWith(TEMPLATE_AID_PREFIX)).map(({ aid, app }) => ({ value: aid, description: app.command.join(' ') }));
    } finally {
      t.env.close();
    }
  } catch {
    return [];
  }
}

function templates(): { value: string; description: string }[] {
  try {
    const dir = templatesDir(resolveHome());
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => ({ value: f.slice(0, -'.json'.length), description: 'template' }));
  } catch {
    return [];
  }
}
