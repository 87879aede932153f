import { describe, expect, it } from 'vitest';
import { expand, parseRules, variableValues } from '../ts/rules.js';

describe('the rules of a template', () => {
  it('reads every rule, in any case, with comments, escapes and variables', () => {
    const r = parseRules(
      [
        '# a comment',
        'Define <APPL-ID> as PROPERTY Application-ID',
        'define <N> AS property clone-number   # trailing comment',
        'REDIR PATH "/srv/app/config" TO "/srv/app/<APPL-ID>/config"',
        'SET ENV HOME = "/srv/app/<APPL-ID>"',
        'SET ENV "GREETING" = "say \\"hi\\" to <N>\\\\"',
        'share shm KEY 0x10',
        'DUPLICATE shm ID 7',
        'DUPLICATE msg KEY 4096',
        'MULTIPLEX port 8080/tcp PUBLIC 18080',
        'VIRTUALIZE port 9090',
        '',
      ].join('\n'),
      'r',
    );
    expect(r.defines.map((d) => [d.name, d.property])).toEqual([
      ['APPL-ID', 'application-id'],
      ['N', 'clone-number'],
    ]);
    const values = variableValues(r, { aid: 'web-2', number: 2, template: 'web' });
    expect(r.redirects.map((x) => [x.from.text, expand(x.to, values), x.to.line, x.to.col])).toEqual([['/srv/app/config', '/srv/app/web-2/config', 4, 33]]);
    expect(r.env.map((e) => [e.name, expand(e.value, values)])).toEqual([
      ['HOME', '/srv/app/web-2'],
      ['GREETING', 'say "hi" to 2\\'],
    ]);
    expect(r.overrides.map((o) => [o.class, o.type, o.by, o.value, o.publicPort, o.line])).toEqual([
      ['shared', 'shm', 'key', 0x10, undefined, 7],
      ['duplicate', 'shm', 'id', 7, undefined, 8],
      ['duplicate', 'msg', 'key', 4096, undefined, 9],
      ['multiplex', 'port', 'port', 8080, 18080, 10],
      ['virtualize', 'port', 'port', 9090, undefined, 11],
    ]);
  });

  it('names the line and column of what it cannot read', () => {
    const bad = (text: string) => () => parseRules(text, 'f');
    expect(bad('REDIR PATH "a" TO "/b"')).toThrow(/^f:1:12: 'a' is not an absolute path/);
    expect(bad('REDIR PATH "/<X>" TO "/b"')).toThrow(/^f:1:12: the path to redirect is what the program opens: it cannot hold a variable/);
    expect(bad('\n  SET ENV "1X" = "v"')).toThrow(/^f:2:11: '1X' is not an environment variable name/);
    expect(bad('SET ENV "X" "v"')).toThrow(/^f:1:13: expected '=', found 'v'/);
    expect(bad('MULTIPLEX port 8080 PUBLIC')).toThrow(/^f:1:27: the rule ends where the public port was expected/);
    expect(bad('MULTIPLEX port 8080 extra')).toThrow(/^f:1:21: unexpected 'extra' after the end of the rule/);
    expect(bad('VIRTUALIZE shm KEY 1')).toThrow(/^f:1:1: a shm cannot be virtualized by a rule: shm may be shared or duplicate/);
    expect(bad('MULTIPLEX port 8080/udp')).toThrow(/^f:1:16: expected a TCP port such as 8080 or 8080\/tcp, not '8080\/udp'/);
    expect(bad('DEFINE APPL AS PROPERTY application-id')).toThrow(/^f:1:8: a variable is written in angle brackets/);
    expect(bad('COPY shm KEY 1')).toThrow(/^f:1:1: expected DEFINE or REDIR or SET or SHARE or DUPLICATE or VIRTUALIZE or MULTIPLEX, found 'COPY'/);
  });
});
