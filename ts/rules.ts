import { AppshotError, EXIT } from './errors.js';

/**
 * A template's rules (FIG. 8): the text an operator writes to personalize
 * each clone. One rule per line; keywords in any case; '#' starts a
 * comment; strings in double quotes with \" and \\ escapes.
 *
 *   DEFINE <APPL-ID> AS PROPERTY application-id
 *   REDIR PATH "/srv/app/config" TO "/srv/app/<APPL-ID>/config"
 *   SET ENV "HOME" = "/srv/app/<APPL-ID>"
 *   SHARE shm KEY 0x10            DUPLICATE shm ID 3
 *   MULTIPLEX port 8080 [PUBLIC 18080]      VIRTUALIZE port 8080
 *
 * A <NAME> inside a string is a variable a DEFINE bound before it.
 */

/** What a variable can stand for, evaluated per clone. */
export const PROPERTIES = ['application-id', 'clone-number', 'template-name'] as const;
export type Property = (typeof PROPERTIES)[number];

/** Where in the rules file a rule or a piece of it stands. */
export interface At {
  line: number;
  col: number;
}

/** A string with its variables still in it, as the template keeps it. */
export interface Text extends At {
  text: string;
}

export const CLASSES = ['shared', 'duplicate', 'virtualize', 'multiplex', 'network-unique'] as const;
export type ResourceClass = (typeof CLASSES)[number];

/** The rule keyword for each class a rule may choose. */
const ACTIONS = { SHARE: 'shared', DUPLICATE: 'duplicate', VIRTUALIZE: 'virtualize', MULTIPLEX: 'multiplex' } as const;
type Action = keyof typeof ACTIONS;

/** Which classes a rule may give each resource type: only a segment can be
 * shared read-only, only a port multiplexed. */
const ALLOWED: Record<string, ResourceClass[]> = {
  sem: ['duplicate'],
  shm: ['shared', 'duplicate'],
  msg: ['duplicate'],
  port: ['virtualize', 'multiplex'],
};

export interface Override extends At {
  class: ResourceClass;
  type: 'sem' | 'shm' | 'msg' | 'port';
  /** IPC objects: by virtual key or virtual ID. Ports: the virtual TCP port. */
  by: 'key' | 'id' | 'port';
  value: number;
  /** MULTIPLEX only: the public port, when it is not the virtual one. */
  publicPort?: number;
}

export interface Rules {
  defines: { name: string; property: Property; at: At }[];
  redirects: { from: Text; to: Text }[];
  env: { name: string; value: Text }[];
  overrides: Override[];
}

interface Token extends At {
  kind: 'word' | 'string' | 'equals';
  text: string;
}

class RuleError extends AppshotError {
  constructor(file: string, at: At, message: string) {
    super(`${file}:${at.line}:${at.col}: ${message}; nothing was made`, EXIT.usage);
  }
}

function tokenize(line: string, lineNo: number, file: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === ' ' || c === '\t' || c === '\r') i++;
    else if (c === '#') break;
    else if (c === '=') tokens.push({ kind: 'equals', text: '=', line: lineNo, col: ++i });
    else if (c === '"') {
      const col = i + 1;
      let text = '';
      for (i++; ; i++) {
        if (i >= line.length) throw new RuleError(file, { line: lineNo, col }, 'this string has no closing double quote');
        if (line[i] === '"') break;
        if (line[i] === '\\' && (line[i + 1] === '"' || line[i + 1] === '\\')) i++;
        text += line[i];
      }
      i++;
      tokens.push({ kind: 'string', text, line: lineNo, col });
    } else {
      const col = i + 1;
      while (i < line.length && !' \t\r"=#'.includes(line[i])) i++;
      tokens.push({ kind: 'word', text: line.slice(col - 1, i), line: lineNo, col });
    }
  }
  return tokens;
}

/** Reads one line's tokens in order, each expectation failing with its column. */
class Cursor {
  private i = 0;
  constructor(
    private tokens: Token[],
    private file: string,
    private eol: At,
  ) {}
  private peek(what: string): Token {
    const t = this.tokens[this.i];
    if (!t) throw new RuleError(this.file, this.eol, `the rule ends where ${what} was expected`);
    return t;
  }
  fail(t: At, message: string): never {
    throw new RuleError(this.file, t, message);
  }
  keyword(...words: string[]): Token {
    const t = this.peek(words.join(' or '));
    if (t.kind !== 'word' || !words.includes(t.text.toUpperCase())) this.fail(t, `expected ${words.join(' or ')}, found '${t.text}'`);
    this.i++;
    return t;
  }
  string(what: string): Token {
    const t = this.peek(what);
    if (t.kind !== 'string') this.fail(t, `expected ${what} in double quotes, found '${t.text}'`);
    this.i++;
    return t;
  }
  word(what: string): Token {
    const t = this.peek(what);
    if (t.kind !== 'word') this.fail(t, `expected ${what}, found '${t.text}'`);
    this.i++;
    return t;
  }
  /** An environment variable's name, quoted or bare. */
  name(): Token {
    const t = this.peek('the variable name');
    if (t.kind === 'equals') this.fail(t, "expected the variable's name before '='");
    this.i++;
    return t;
  }
  equals(): void {
    const t = this.peek("'='");
    if (t.kind !== 'equals') this.fail(t, `expected '=', found '${t.text}'`);
    this.i++;
  }
  optional(word: string): boolean {
    const t = this.tokens[this.i];
    if (t?.kind === 'word' && t.text.toUpperCase() === word) return this.i++, true;
    return false;
  }
  end(): void {
    const t = this.tokens[this.i];
    if (t) this.fail(t, `unexpected '${t.text}' after the end of the rule`);
  }
}

const VAR_RE = /<([A-Za-z0-9_-]+)>/g;

function parseNumber(c: Cursor, t: Token, what: string, max: number): number {
  const n = /^(0x[0-9a-f]+|[0-9]+)$/i.test(t.text) ? Number(t.text) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > max) c.fail(t, `${what} must be a number from 0 to ${max} (decimal or 0x hex), not '${t.text}'`);
  return n;
}

function parsePort(c: Cursor, t: Token, what: string): number {
  const n = parseNumber(c, t, what, 65535);
  if (n === 0) c.fail(t, `${what} must be from 1 to 65535, not 0`);
  return n;
}

export function parseRules(source: string, file: string): Rules {
  const rules: Rules = { defines: [], redirects: [], env: [], overrides: [] };
  const defined = new Set<string>();
  const lines = source.split('\n');
  lines.forEach((line, n) => {
    const lineNo = n + 1;
    const tokens = tokenize(line, lineNo, file);
    if (!tokens.length) return;
    const c = new Cursor(tokens, file, { line: lineNo, col: line.trimEnd().length + 1 });
    /** A string's variables must each have been DEFINEd above it. */
    const text = (t: Token): Text => {
      for (const m of t.text.matchAll(VAR_RE))
        if (!defined.has(m[1])) c.fail({ line: lineNo, col: t.col + 1 + m.index! }, `<${m[1]}> is not defined: add 'DEFINE <${m[1]}> AS PROPERTY application-id' (or another property) above this line`);
      return { text: t.text, line: lineNo, col: t.col };
    };
    const head = c.keyword('DEFINE', 'REDIR', 'SET', ...Object.keys(ACTIONS));
    switch (head.text.toUpperCase()) {
      case 'DEFINE': {
        const v = c.word('a variable such as <APPL-ID>');
        const m = /^<([A-Za-z0-9_-]+)>$/.exec(v.text);
        if (!m) c.fail(v, `a variable is written in angle brackets, such as <APPL-ID>, not '${v.text}'`);
        c.keyword('AS');
        c.keyword('PROPERTY');
        const p = c.word('a property');
        const property = PROPERTIES.find((x) => x === p.text.toLowerCase());
        if (!property) c.fail(p, `unknown property '${p.text}': one of ${PROPERTIES.join(', ')}`);
        c.end();
        defined.add(m![1]);
        rules.defines.push({ name: m![1], property: property!, at: { line: lineNo, col: head.col } });
        break;
      }
      case 'REDIR': {
        c.keyword('PATH');
        const from = c.string('the path to redirect');
        c.keyword('TO');
        const to = c.string('the path to redirect it to');
        c.end();
        if (from.text.match(VAR_RE)) c.fail(from, 'the path to redirect is what the program opens: it cannot hold a variable');
        if (!from.text.startsWith('/')) c.fail(from, `'${from.text}' is not an absolute path`);
        if (!to.text.startsWith('/')) c.fail(to, `'${to.text}' is not an absolute path`);
        rules.redirects.push({ from: text(from), to: text(to) });
        break;
      }
      case 'SET': {
        c.keyword('ENV');
        const name = c.name();
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name.text)) c.fail(name, `'${name.text}' is not an environment variable name`);
        c.equals();
        const value = c.string('the value');
        c.end();
        rules.env.push({ name: name.text, value: text(value) });
        break;
      }
      default:
        rules.overrides.push(parseOverride(c, head));
    }
  });
  return rules;
}

function parseOverride(c: Cursor, head: Token): Override {
  const action = head.text.toUpperCase() as Action;
  const cls = ACTIONS[action];
  const typeTok = c.word('a resource type');
  const type = typeTok.text.toLowerCase() as Override['type'];
  if (!ALLOWED[type]) c.fail(typeTok, `unknown resource type '${typeTok.text}': one of ${Object.keys(ALLOWED).join(', ')}`);
  if (!ALLOWED[type].includes(cls)) c.fail(head, `a ${type} cannot be ${cls === 'shared' ? 'shared' : cls === 'multiplex' ? 'multiplexed' : cls === 'virtualize' ? 'virtualized by a rule' : 'duplicated'}: ${type} may be ${ALLOWED[type].join(' or ')}`);
  const at = { line: head.line, col: head.col };
  if (type === 'port') {
    const p = c.word('the virtual port');
    const m = /^([0-9]+)(\/tcp)?$/i.exec(p.text);
    if (!m) c.fail(p, `expected a TCP port such as 8080 or 8080/tcp, not '${p.text}'`);
    const value = parsePort(c, { ...p, text: m![1] }, 'a port');
    let publicPort: number | undefined;
    if (cls === 'multiplex' && c.optional('PUBLIC')) publicPort = parsePort(c, c.word('the public port'), 'a public port');
    c.end();
    return { ...at, class: cls, type, by: 'port', value, ...(publicPort ? { publicPort } : {}) };
  }
  const by = c.keyword('KEY', 'ID').text.toLowerCase() as 'key' | 'id';
  const value = parseNumber(c, c.word(by === 'key' ? 'an IPC key' : 'a virtual ID'), by === 'key' ? 'an IPC key' : 'a virtual ID', 0xffffffff);
  c.end();
  return { ...at, class: cls, type, by, value };
}

/** A string of the rules with its variables given their values for one clone. */
export function expand(t: Text, values: Record<string, string>): string {
  return t.text.replace(VAR_RE, (_, name: string) => values[name]);
}

/** Each variable's value for one clone. */
export function variableValues(rules: Rules, clone: { aid: string; number: number; template: string }): Record<string, string> {
  const of: Record<Property, string> = { 'application-id': clone.aid, 'clone-number': String(clone.number), 'template-name': clone.template };
  return Object.fromEntries(rules.defines.map((d) => [d.name, of[d.property]]));
}

export const NO_RULES: Rules = { defines: [], redirects: [], env: [], overrides: [] };
