import { appLive, endAppInTxn, type CleanupReport } from './cleanup.js';
import { foldJournal } from './sysv/object.js';
import { checkAppAid } from './aid.js';
import { AppshotError, EXIT } from './errors.js';
import { startTicks } from './procinfo.js';
import type { Publication } from './pool.js';
import { type Redirect, putRedirects } from './redirect.js';
import { putFwd } from './rows.js';
import { type TableDb, getApp, nextCounter, putApp, writeTxn } from './tabledb.js';
import * as S from '../tables/schema.js';

export interface Registration {
  aid: string;
  /** A kept application's state taken up again. */
  adopted: boolean;
  /** What was left of a stale application of the same name. */
  reclaimed?: CleanupReport;
}

/**
 * FIGs. 10 and 14: registers the AID (the given name, or a generated one),
 * creates its translation table space, writes its path redirections and
 * links this harness to it, all in one write transaction, so two harnesses racing for one name cannot both
 * win.
 */
export function registerApp(
  t: TableDb,
  opts: { aid?: string; command: string[]; noIdentity?: boolean; clone?: boolean; publish?: Publication[]; redirects?: Redirect[] },
): Registration {
  if (opts.aid !== undefined) checkAppAid(opts.aid);
  foldJournal(t); // an earlier run's rows, should this AID's be reclaimed
  return writeTxn(t, () => {
    let aid = opts.aid;
    let adopted = false;
    let reclaimed: CleanupReport | undefined;
    if (aid === undefined) {
      do aid = `app-${nextCounter(t, 'next_aid')}`;
      while (getApp(t, aid));
    } else {
      const existing = getApp(t, aid);
      if (existing?.state === S.APP_STATE.running) {
        if (appLive(t, aid, existing))
          throw new AppshotError(
            `application '${aid}' is already running (harness pid ${existing.harnessSpid}, started ${new Date(existing.createdMs).toISOString()}, command: ${existing.command.join(' ')}); choose another --aid or end that application first`,
            EXIT.conflict,
          );
        reclaimed = endAppInTxn(t, aid, { keep: false });
      } else if (existing?.state === S.APP_STATE.kept) {
        adopted = true;
      }
    }
    const now = Date.now();
    putApp(t, aid, {
      schema: S.SCHEMA_VERSION,
      state: S.APP_STATE.running,
      flags: (opts.noIdentity ? S.APP_FLAG_NO_IDENTITY : 0) | (opts.clone ? S.APP_FLAG_CLONE : 0),
      harnessSpid: process.pid,
      harnessStart: startTicks(process.pid) ?? 0,
      createdMs: now,
      endedMs: 0,
      command: opts.command,
    });
    t.procs.putSync(S.procKey(process.pid), S.procVal(startTicks(process.pid) ?? 0, aid));
    for (const p of opts.publish ?? []) {
      const vrid = S.portId(S.PORT_PROTO.tcp, p.virtual);
      const row = { srid: S.portId(S.PORT_PROTO.tcp, p.public), vkey: 0, skey: 0, creator: process.pid, createdMs: now };
      putFwd(t, aid, S.RT.publish, vrid, row);
    }
    putRedirects(t, aid, opts.redirects ?? []);
    return { aid, adopted, reclaimed };
  });
}

/** Removes the record of an application a failed restore registered (its
 * rows and objects gone already: endApp): as if it had never been. */
export function forgetApp(t: TableDb, aid: string): void {
  writeTxn(t, () => t.apps.removeSync(Buffer.from(aid, 'latin1')));
}
