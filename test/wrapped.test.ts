import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ROOT, SHIM_PATH } from '../ts/paths.js';

/** Exported by the shim without being a wrapper: the translation lookup
 * under a stable name, for the benchmarks (native/shim/translate.c); the
 * function a restorer calls in a restored process (native/shim/canary.h). */
const NOT_WRAPPERS = ['appshot_vr_to_sr', 'shim_restored_entry'];

/** The functions native/shim/wrapped.def lists: each line not a comment is
 * "RET NAME(PARAMS) POLICY". */
function listed(): string[] {
  const names: string[] = [];
  for (const line of readFileSync(`${ROOT}/native/shim/wrapped.def`, 'utf8').split('\n')) {
    if (/^\s*(#|$)/.test(line)) continue;
    const m = /([A-Za-z_]\w*)\s*\(/.exec(line);
    if (!m) throw new Error(`wrapped.def: not RET NAME(PARAMS) POLICY: ${line}`);
    names.push(m[1]);
  }
  return names;
}

/** The symbols the built shim defines in its dynamic symbol table. */
function exported(): string[] {
  const out = execFileSync('nm', ['-D', '--defined-only', SHIM_PATH], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).at(-1)!);
}

describe('the wrapped list is the whole contract', () => {
  it('lists each function once', () => {
    const names = listed();
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
  });

  it('the shim exports exactly the listed functions', () => {
    const want = new Set(listed());
    const have = new Set(exported().filter((s) => !NOT_WRAPPERS.includes(s)));
    expect([...have].filter((s) => !want.has(s)).sort(), 'exported but not in wrapped.def').toEqual([]);
    expect([...want].filter((s) => !have.has(s)).sort(), 'in wrapped.def but not exported').toEqual([]);
  });

  it('exports what it names as its own', () => {
    expect(exported()).toEqual(expect.arrayContaining(NOT_WRAPPERS));
  });
});
