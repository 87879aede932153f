import { constants, cpSync, existsSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { addon } from './addon.js';
import { endApp } from './cleanup.js';
import { AppshotError, EXIT, errnoText } from './errors.js';
import type { Publication } from './pool.js';
import { type Redirect, normalizePath, redirectPath } from './redirect.js';
import { registerApp } from './registry.js';
import { claim, putFwd } from './rows.js';
import { type RestoreSummary, restoreSections } from './restore.js';
import { expand, variableValues } from './rules.js';
import { forgetSeeds, recordSeeds } from './seeds.js';
import { SnapReader } from './snapfile.js';
import type { SharedSegment } from './sysv/object.js';
import { type TableDb, fwdRows, getApp, writeTxn } from './tabledb.js';
import { type Template, checkSharedSegments, checkSnapshotUnchanged } from './template.js';
import { checkWarm } from './warm.js';
import * as S from '../tables/schema.js';

/**
 * FIG. 9: one clone of a template. A new AID; the template's virtual IDs,
 * keys and first vpid bound to fresh system objects (duplicates filled
 * from the snapshot), its shared segments mapped, its virtualized ports
 * leased, its multiplexed ports published, its paths redirected and its
 * environment set by the rules. All or nothing: a clone that cannot be
 * made entirely leaves nothing behind.
 */

export interface Clone {
  aid: string;
  number: number;
  command: string[];
  env: Record<string, string> | null;
  cwd: string | null;
  firstVpid: number | null;
  noIdentity: boolean;
  publish: Publication[];
  redirects: Redirect[];
  /** Ports leased at clone time, virtual -> system, as "9090/tcp -> 20001". */
  leases: string[];
  restored: RestoreSummary;
  /** A warm clone's image (the template's copy), whose processes it
   * continues; absent for a cold clone, which starts command. */
  image?: string;
  /** A warm clone's rules' redirections as the restorer applies them to the
   * image's open files: the kernel's path in the image -> the clone's. */
  moves: Redirect[];
}

/** The next clone number whose AID no application holds: not a live or
 * kept one, nor an ended one whose rows are left (a segment still attached
 * outside it), whose rows a clone's rollback would orphan. */
function nextNumber(t: TableDb, name: string, from: number): number {
  const held = (aid: string) => {
    const app = getApp(t, aid);
    return !!app && (app.state !== S.APP_STATE.ended || !fwdRows(t, aid).next().done);
  };
  let n = from;
  while (held(`${name}-${n}`)) n++;
  return n;
}

/** Leases a system port for each virtualized port now, as the shim would on
 * the first bind (its own number first, then the range), so a clone the
 * port range cannot hold is refused before it starts. */
function leasePorts(t: TableDb, aid: string, vids: number[], range: { lo: number; hi: number }, identity: boolean): string[] {
  const leases: string[] = [];
  writeTxn(t, () => {
    for (const vid of vids) {
      const { proto, port } = S.decodePortId(vid);
      const code = S.PORT_PROTO[proto as 'tcp' | 'udp'];
      const free = (p: number) => t.rev.get(S.revKey(t.node, S.RT.port, S.portId(code, p))) === undefined && addon().portFree(code, p);
      let sport = identity && free(port) ? port : 0;
      for (let p = range.lo; !sport && p <= range.hi; p++) if (p !== port && free(p)) sport = p;
      if (!sport)
        throw new AppshotError(
          `no free system port for virtual port ${port}/${proto} of application '${aid}': every port of the range ${range.lo}-${range.hi} is taken; end applications that hold ports there, or give the clones a wider --port-range`,
          EXIT.failure,
        );
      const sid = S.portId(code, sport);
      // Claimed first, as the shim's bind does (free() said no one holds it).
      claim(t, aid, S.RT.port, vid, sid);
      putFwd(t, aid, S.RT.port, vid, { srid: sid, vkey: 0, skey: 0, creator: process.pid, createdMs: Date.now() });
      leases.push(`${port}/${proto} -> ${sport}`);
    }
  });
  return leases;
}

function isSpecial(path: string): boolean {
  const st = lstatSync(path);
  return st.isSocket() || st.isFIFO();
}

/** Gives each redirected path's target a start: its parent directories, and
 * a copy of what the template's own path holds, unless the target exists
 * (an operator may have put the clone's own file there). The copy is a
 * reflink, copy-on-write, where the filesystem can make one (btrfs, XFS),
 * and a full copy elsewhere. What it makes goes into made as it goes, for
 * the rollback of a clone whose seeding fails part way. */
function seedTargets(redirects: Redirect[], made: string[]): void {
  for (const r of redirects) {
    if (existsSync(r.to)) continue;
    let top = dirname(r.to);
    while (!existsSync(dirname(top))) top = dirname(top);
    if (!existsSync(top)) made.push(top);
    mkdirSync(dirname(r.to), { recursive: true });
    if (existsSync(r.from)) {
      made.push(r.to); // first: a copy that fails part way is removed too
      // A socket or FIFO the template's program left there is a name, not
      // data: the clone's program binds or makes its own (cp cannot copy one).
      cpSync(r.from, r.to, { recursive: true, preserveTimestamps: true, mode: constants.COPYFILE_FICLONE, filter: (src) => !isSpecial(src) });
    }
  }
}

/** Drops everything a clone that failed had made: objects, rows, its entry, seeded paths. */
function unmake(t: TableDb, aid: string, seeded: string[]): void {
  endApp(t, aid, { keep: false });
  writeTxn(t, () => t.apps.removeSync(Buffer.from(aid, 'latin1')));
  for (const p of seeded.reverse()) rmSync(p, { recursive: true, force: true });
  forgetSeeds(t, aid);
}

export function makeClone(t: TableDb, tpl: Template, opts: { from: number; command?: string[]; portRange: { lo: number; hi: number }; publish?: Publication[]; warm?: boolean }): Clone {
  checkSnapshotUnchanged(tpl);
  if (opts.warm) checkWarm(tpl.name, tpl.warm!);
  checkSharedSegments(tpl);
  if (!opts.command && tpl.meta.cwd && !existsSync(tpl.meta.cwd))
    throw new AppshotError(`the template's working directory ${tpl.meta.cwd} does not exist here; create it, or give the command to run after --`, EXIT.failure);
  const number = nextNumber(t, tpl.name, opts.from);
  const aid = `${tpl.name}-${number}`;
  const m = tpl.meta;
  const values = variableValues(tpl.rules, { aid, number, template: tpl.name });
  // The rules' first: the first redirection covering a path wins, over any the snapshot carried.
  const redirects = [...tpl.rules.redirects.map((r) => ({ from: normalizePath(r.from.text), to: normalizePath(expand(r.to, values)) })), ...(m.redirects ?? [])];
  // The snapshot's first process's environment, else the harness's, as restore and run start with.
  const env = tpl.rules.env.length ? { ...(m.env ?? (process.env as Record<string, string>)), ...Object.fromEntries(tpl.rules.env.map((e) => [e.name, expand(e.value, values)])) } : m.env;
  const publish = opts.publish ?? tpl.resources.filter((x) => x.kind === 'port' && x.class === 'multiplex').map((x) => ({ public: x.publicPort!, virtual: S.decodePortId(x.vrid).port }));
  const command = opts.command ?? m.command;
  registerApp(t, { aid, command, noIdentity: m.noIdentity, clone: true, publish, redirects });
  const seeded: string[] = [];
  try {
    const restored: RestoreSummary = { aid, meta: m, processes: 0, sems: 0, segments: 0, shmBytes: 0, shared: 0, copySeconds: 0, queues: 0, messages: 0, seconds: 0 };
    const r = new SnapReader(tpl.image?.file ?? tpl.snapshot.file);
    try {
      r.skip(r.next()!); // META: the template holds what it says
      restoreSections(t, r, aid, !m.noIdentity, restored, undefined, new Map(tpl.shared.map((s: SharedSegment) => [s.vrid, s])), false);
    } finally {
      r.close();
    }
    const ports = tpl.resources.filter((x) => x.kind === 'port' && x.class === 'virtualize').map((x) => x.vrid);
    const leases = leasePorts(t, aid, ports, opts.portRange, !m.noIdentity);
    try {
      recordSeeds(t, aid, redirects); // for gc, should this harness die before the clone starts
      seedTargets(redirects, seeded);
    } catch (err) {
      throw new AppshotError(`cannot prepare the redirected paths of clone '${aid}': ${errnoText(err)}`, EXIT.failure);
    }
    const image = opts.warm ? tpl.image!.file : undefined;
    // The rules' FROM as the source's kernel saw it (through its own redirections), to the clone's TO.
    const moves = tpl.rules.redirects.map((r) => ({ from: redirectPath(m.redirects ?? [], normalizePath(r.from.text)), to: normalizePath(expand(r.to, values)) }));
    return { aid, number, command, env, cwd: opts.command ? null : m.cwd, firstVpid: m.firstVpid, noIdentity: m.noIdentity, publish, redirects, leases, restored, moves, ...(image ? { image } : {}) };
  } catch (err) {
    unmake(t, aid, seeded);
    throw err;
  }
}
