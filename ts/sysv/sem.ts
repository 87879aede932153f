import { semGetAll, semSetAll } from './kernel.js';
import { type Kind, type Perm, capturedStat, createObject, failedAt, liveRows, perm, removeObject, setPerm, whyNotHeld } from './object.js';

/**
 * Semaphore sets: a snapshot holds each set's values (one SEM section for
 * all of them); restore makes each set again, sets its values, then gives
 * it its owner and mode (last: a mode without write would refuse SETALL).
 */

export interface SemRecord extends Perm {
  values: number[];
}

export const SEM: Kind = {
  type: 'sem',

  capture(w, rows, c) {
    const sems: SemRecord[] = liveRows(rows, 'sem').map((row) => ({ ...perm(row, capturedStat('sem', row, c.aid)), values: semGetAll(row.srid) }));
    w.json('sem', sems);
    c.sum.sems = sems.length;
  },

  recreate(r, s, c) {
    for (const rec of r.json<SemRecord[]>(s)) {
      const what = `semaphore set ${rec.vrid}`;
      try {
        const srid = createObject(c.t, c.aid, c.identity, 'sem', rec, rec.values.length);
        semSetAll(srid, rec.values);
        setPerm('sem', srid, rec);
      } catch (err) {
        throw failedAt(what, err);
      }
      c.sum.sems++;
    }
  },

  remove: (row, listings) => removeObject('sem', row, listings),
  check: (listings, srid, key) => whyNotHeld('sem', listings, srid, key),
};
