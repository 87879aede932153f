import { existsSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { AppshotError, EXIT } from './errors.js';
import type { Redirect } from './redirect.js';
import { type TableDb, getApp, writeTxn } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * A clone's redirected paths are seeded (made, and filled from the
 * template's own) before its command starts. A clone whose harness dies in
 * between never runs, and nothing else would remove what was seeded for
 * it. So what seeding is about to make is recorded first, in the meta
 * table under seeded/AID with the clone's creation time, and forgotten once
 * the command has started: from then on the folders are the clone's data,
 * kept as any application's. `appshot gc` removes the folders of a record
 * whose clone has ended (gc ends the stale ones first) without starting.
 */

interface SeedRecord {
  /** The clone's createdMs: the record is of that clone, not of a later
   * application under the same AID. */
  createdMs: number;
  paths: string[];
}

const PREFIX = 'seeded/';
const seedKey = (aid: string) => Buffer.from(PREFIX + aid, 'latin1');

/** The topmost folder seeding path would make: path, or the highest of
 * its missing parents. */
function topMissing(path: string): string {
  let top = path;
  while (!existsSync(dirname(top))) top = dirname(top);
  return top;
}

/** What seeding the redirections' targets would make, recorded for aid
 * before it is made. */
export function recordSeeds(t: TableDb, aid: string, redirects: Redirect[]): void {
  const paths = [...new Set(redirects.filter((r) => !existsSync(r.to)).map((r) => topMissing(r.to)))];
  if (!paths.length) return;
  writeTxn(t, () => {
    const app = getApp(t, aid);
    if (!app) return;
    const rec = Buffer.from(JSON.stringify({ createdMs: app.createdMs, paths } satisfies SeedRecord));
    if (rec.length > S.META_VAL_MAX)
      throw new AppshotError(`clone '${aid}' would seed ${paths.length} folders, more than appshot can record (${S.META_VAL_MAX} bytes of paths); give the template fewer REDIR rules`, EXIT.usage);
    t.meta.putSync(seedKey(aid), rec);
  });
}

/** The clone has started (or its seeds were removed): its record goes. */
export function forgetSeeds(t: TableDb, aid: string): void {
  writeTxn(t, () => t.meta.removeSync(seedKey(aid)));
}

/** For `appshot gc`: removes what was seeded for clones that ended without
 * ever starting, and drops records that no longer name their clone. */
export function sweepSeeds(t: TableDb): string[] {
  const notes: string[] = [];
  const range = { start: Buffer.from(PREFIX, 'latin1'), end: Buffer.from(PREFIX.slice(0, -1) + '0', 'latin1') };
  for (const { key, value } of [...t.meta.getRange(range)]) {
    const aid = key.toString('latin1').slice(PREFIX.length);
    const rec = JSON.parse(value.toString('utf8')) as SeedRecord;
    const app = getApp(t, aid);
    const same = app?.createdMs === rec.createdMs;
    // A live clone that is still being made keeps its record.
    if (same && app.state !== S.APP_STATE.ended) continue;
    if (!app || same) {
      for (const p of rec.paths) rmSync(p, { recursive: true, force: true });
      notes.push(`removed what was seeded for clone '${aid}', which never started: ${rec.paths.join(', ')}`);
    }
    // Under another application of the same name now: whatever is there is its.
    writeTxn(t, () => {
      if (t.meta.get(key)?.equals(value)) t.meta.removeSync(key);
    });
  }
  return notes;
}
