import { closeSync, constants, existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { appLive, endApp } from './cleanup.js';
import { type Redirect, checkRedirects } from './redirect.js';
import { TEMPLATE_AID_PREFIX, homeSubdir, openHomeFile, templateFile, templatesDir } from './home.js';
import { AppshotError, EXIT, errnoText, notAFile, unreadable } from './errors.js';
import { type At, type Override, type ResourceClass, type Rules, NO_RULES, expand, parseRules, variableValues } from './rules.js';
import type { SnapMeta } from './snapshot.js';
import { SnapReader } from './snapfile.js';
import { Listings } from './sysv/kernel.js';
import { type SharedSegment, setPerm } from './sysv/object.js';
import { SHM, type ShmRecord, makeSegment } from './sysv/shm.js';
import { type TableDb, getApp, putApp, writeTxn } from './tabledb.js';
import { startTicks } from './procinfo.js';
import { type WarmInfo, analyzeImage, copyImage, imageFile } from './warm.js';
import { type SnapshotReport, inspectSnapshot } from './snapcontents.js';
import * as S from '../tables/schema.js';

/**
 * Snapshot virtual templates (FIGs. 7 and 8): a snapshot, every resource in
 * it classified (shared, duplicate, virtualize, multiplex, network-unique)
 * by a rule or by appshot's own criteria, the rules that personalize each
 * clone, and the template's shared segments, made once in the kernel and
 * owned by the template's own entry in the tables (state 'template').
 */

export type ResourceKind = 'sem' | 'shm' | 'msg' | 'key' | 'pid' | 'port' | 'property';

/** One resource of the template and what a clone does with it (FIG. 7's
 * resource descriptor; the bytes stay in the snapshot). */
export interface Resource {
  kind: ResourceKind;
  /** As a person names it: "shm 3", "key 0x5eed (shm)", "port 8080/tcp". */
  name: string;
  vrid: number;
  class: ResourceClass;
  /** Why it got that class: the criterion met, or the rule's place. */
  why: string;
  rule?: At;
  /** Segments: their size, for the listing and the clone's copy. */
  size?: number;
  /** Multiplexed ports: the public port the clones' pool listens on. */
  publicPort?: number;
}

/** The snapshot file as it was when the template was made: any write to it
 * since changes its ctime. */
export interface FileIdentity {
  file: string;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

export interface Template {
  name: string;
  /** Its entry in the tables: the owner of its shared segments. */
  aid: string;
  createdAt: string;
  snapshot: FileIdentity;
  rulesFile: string | null;
  rules: Rules;
  meta: SnapMeta;
  resources: Resource[];
  shared: SharedSegment[];
  /** A whole snapshot's: the template's own read-only copy of it in the
   * home, which clones read and map (absent for an --ipc-only snapshot,
   * and in templates made before warm clones). */
  image?: FileIdentity;
  /** Whether clones can continue the image's processes, and what they need. */
  warm?: WarmInfo;
}

const NAME_MAX = 40;

export function checkTemplateName(name: string): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name) || name.length > NAME_MAX)
    throw new AppshotError(`'${name}' is not a valid template name: use 1 to ${NAME_MAX} letters, digits, '.', '_' or '-', not starting with '.' or '-'`, EXIT.usage);
}

const hex = (n: number) => '0x' + (n >>> 0).toString(16);

/* --- classification (FIG. 8) ---------------------------------------------- */

function ruleFor(rules: Rules, type: Override['type'], match: (o: Override) => boolean): Override | undefined {
  // The last rule naming a resource wins, as a later line overrides an earlier one.
  return rules.overrides.filter((o) => o.type === type && match(o)).pop();
}
const byRule = (o: Override) => `rule at line ${o.line}`;
const ipcMatch = (vrid: number, vkey: number) => (o: Override) => (o.by === 'id' ? o.value === vrid : vkey !== 0 && o.value === vkey);

/** A segment is shared when no one could or did write it at the snapshot;
 * anything that may be modified is copied, so clones never see each other's writes. */
function classifySegment(seg: SnapshotReport['segments'][number]): { class: ResourceClass; why: string } {
  const mode = parseInt(seg.mode, 8);
  if ((mode & 0o222) === 0) return { class: 'shared', why: `its mode ${seg.mode} lets no one write it: one read-only segment for all clones` };
  const a = seg.attached;
  if (a && a.rw === 0 && a.ro > 0)
    return { class: 'shared', why: `every attachment at the snapshot was read-only (${a.ro}): one read-only segment for all clones` };
  if (a && a.rw > 0) return { class: 'duplicate', why: `attached writable at the snapshot (${a.rw} attachment${a.rw > 1 ? 's' : ''}): each clone gets its own copy` };
  return { class: 'duplicate', why: 'not attached at the snapshot, so it may be written: each clone gets its own copy' };
}

export function classify(rep: SnapshotReport, rules: Rules, rulesFile: string): Resource[] {
  const out: Resource[] = [];
  const used = new Set<Override>();
  const apply = (o: Override | undefined, auto: { class: ResourceClass; why: string }) => {
    if (!o) return auto;
    used.add(o);
    return { class: o.class, why: byRule(o), rule: { line: o.line, col: o.col } };
  };
  const keyOf = (type: string, vkey: number, cls: ResourceClass) => {
    if (!vkey) return;
    const shared = cls === 'shared';
    out.push({
      kind: 'key',
      name: `key ${hex(vkey)} (${type})`,
      vrid: vkey,
      class: shared ? 'shared' : 'virtualize',
      why: shared ? 'the key of a shared segment names the one segment in every clone' : `a fixed key: each clone's ${hex(vkey)} names its own ${type}, under a system key of its own`,
    });
  };
  for (const x of rep.sems) {
    const c = apply(ruleFor(rules, 'sem', ipcMatch(x.vrid, x.key)), { class: 'duplicate', why: 'its values change: each clone gets its own copy, under the same virtual ID' });
    out.push({ kind: 'sem', name: `sem ${x.vrid}`, vrid: x.vrid, ...c });
    keyOf('sem', x.key, c.class);
  }
  for (const x of rep.segments) {
    const c = apply(ruleFor(rules, 'shm', ipcMatch(x.vrid, x.key)), classifySegment(x));
    out.push({ kind: 'shm', name: `shm ${x.vrid}`, vrid: x.vrid, size: x.size, ...c });
    keyOf('shm', x.key, c.class);
  }
  for (const x of rep.queues) {
    const c = apply(ruleFor(rules, 'msg', ipcMatch(x.vrid, x.key)), { class: 'duplicate', why: 'its messages are consumed: each clone gets its own copy of them' });
    out.push({ kind: 'msg', name: `msg ${x.vrid}`, vrid: x.vrid, ...c });
    keyOf('msg', x.key, c.class);
  }
  if (rep.meta.firstVpid)
    out.push({ kind: 'pid', name: `pid ${rep.meta.firstVpid}`, vrid: rep.meta.firstVpid, class: 'virtualize', why: 'the first process: in every clone it has this vpid, over a system pid of its own' });
  classifyPorts(rep, rules, out, apply);
  out.push({ kind: 'property', name: 'application-id', vrid: 0, class: 'network-unique', why: 'unique across the farm: each clone is a new application, named <template>-<n>' });
  const unused = rules.overrides.find((o) => !used.has(o));
  if (unused) {
    const what = unused.type === 'port' ? `port ${unused.value}` : `${unused.type} with ${unused.by === 'key' ? `key ${hex(unused.value)}` : `virtual ID ${unused.value}`}`;
    throw new AppshotError(`${rulesFile}:${unused.line}:${unused.col}: unknown resource: the snapshot holds no ${what}; nothing was made`, EXIT.usage);
  }
  return out;
}

/** Ports (FIG. 8 steps 378-382): one that clients outside reach (published)
 * is multiplexed, one the application only uses itself is virtualized. */
function classifyPorts(
  rep: SnapshotReport,
  rules: Rules,
  out: Resource[],
  apply: (o: Override | undefined, auto: { class: ResourceClass; why: string }) => { class: ResourceClass; why: string; rule?: At },
): void {
  const ports = new Map<number, { published?: number }>();
  for (const p of rep.ports) if (p.proto === 'tcp' || p.proto === 'udp') ports.set(S.portId(S.PORT_PROTO[p.proto as 'tcp' | 'udp'], p.virtual), {});
  for (const p of rep.meta.publish) ports.set(S.portId(S.PORT_PROTO.tcp, p.virtual), { published: p.public });
  // A rule for a port the snapshot does not hold (MULTIPLEX as VIRTUALIZE)
  // is left unused, and classify refuses it with its line and column.
  for (const [vid, p] of ports) {
    const { proto, port } = S.decodePortId(vid);
    const auto =
      p.published !== undefined
        ? { class: 'multiplex' as const, why: `published at public port ${p.published}: clients outside reach it, so the clones form its pool` }
        : { class: 'virtualize' as const, why: 'bound by the application, not published: each clone leases a system port of its own' };
    const o = proto === 'tcp' ? ruleFor(rules, 'port', (r) => r.value === port) : undefined;
    const c = apply(o, auto);
    const publicPort = c.class === 'multiplex' ? (o?.publicPort ?? p.published ?? port) : undefined;
    out.push({ kind: 'port', name: `port ${port}/${proto}`, vrid: vid, ...c, ...(publicPort ? { publicPort } : {}) });
  }
}

/* --- rules checked against the host ---------------------------------------- */

/** The nearest directory of path that exists. */
function existingAncestor(path: string): string {
  let dir = path;
  while (!existsSync(dir)) dir = dirname(dir);
  return dir;
}

/** Why this user cannot make directories in dir, or null when they can:
 * a real probe (a directory made and removed), since access() answers yes
 * to root even where the file system says no (procfs, read-only mounts). */
function unwritable(dir: string): string | null {
  if (!statSync(dir).isDirectory()) return `${dir} is a file, not a directory`;
  try {
    rmdirSync(mkdtempSync(join(dir, '.appshot-probe-')));
    return null;
  } catch (err) {
    return `${dir} cannot be written: ${errnoText(err)}`;
  }
}

/** A REDIR target must lie where this user can make it: checked for the
 * first clone's values before anything is made. */
export function checkRedirectTargets(rules: Rules, rulesFile: string, home: string, sample: { aid: string; number: number; template: string }): void {
  const values = variableValues(rules, sample);
  const checked: Redirect[] = [];
  for (const r of rules.redirects) {
    const target = expand(r.to, values);
    try {
      checked.push({ from: r.from.text, to: target });
      checkRedirects(checked, home);
    } catch (err) {
      throw new AppshotError(`${rulesFile}:${r.from.line}:${r.from.col}: ${(err as Error).message}; nothing was made`, EXIT.usage);
    }
    const why = unwritable(existingAncestor(dirname(target)));
    if (why)
      throw new AppshotError(
        `${rulesFile}:${r.to.line}:${r.to.col}: the REDIR target ${target} is outside any directory you can write (${why}); choose a target under a directory you own; nothing was made`,
        EXIT.usage,
      );
  }
}

/* --- the template's store -------------------------------------------------- */

export function fileIdentity(file: string): FileIdentity {
  const st = statSync(file);
  return { file, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino };
}

/** Refuses a template whose snapshot changed since the template was made:
 * its shared segments hold the bytes it had then. */
export function checkSnapshotUnchanged(tpl: Template): void {
  let now: FileIdentity;
  // A whole snapshot's template reads its own copy, whatever became of the original.
  const was = tpl.image ?? tpl.snapshot;
  const what = tpl.image ? 'image' : 'snapshot';
  if (!isAbsolute(was.file)) {
    // Made before templates kept their snapshot's absolute path: the file
    // is found only from the directory the template was made in.
    let same = false;
    try {
      const here = fileIdentity(was.file);
      same = here.ino === was.ino && here.size === was.size && here.mtimeMs === was.mtimeMs && here.ctimeMs === was.ctimeMs;
    } catch {
      /* not here */
    }
    if (!same)
      throw new AppshotError(
        `template '${tpl.name}' names its snapshot by the relative path ${was.file} (it was made by an earlier appshot), and from ${process.cwd()} that ${existsSync(was.file) ? 'is another file' : 'names no file'}; nothing was cloned. Clone from the directory the template was made in, or make it again: appshot template rm ${tpl.name}, then appshot template create ${tpl.name} --from /the/full/path/of/${basename(was.file)}${tpl.rulesFile ? ` --rules ${tpl.rulesFile}` : ''}`,
        EXIT.failure,
      );
  }
  try {
    now = fileIdentity(was.file);
  } catch (err) {
    throw new AppshotError(`template '${tpl.name}': its ${what} ${was.file} cannot be read (${errnoText(err)}); remove the template with 'appshot template rm ${tpl.name}'`, EXIT.inconsistent);
  }
  if (now.size !== was.size || now.mtimeMs !== was.mtimeMs || now.ctimeMs !== was.ctimeMs || now.ino !== was.ino)
    throw new AppshotError(
      `template '${tpl.name}': its ${what} ${was.file} was altered after the template was made (size ${was.size} -> ${now.size}, changed ${new Date(was.ctimeMs).toISOString()} -> ${new Date(now.ctimeMs).toISOString()}); nothing was cloned. Make the template again from a good snapshot`,
      EXIT.inconsistent,
    );
}

/** Refuses a template whose shared segments the kernel no longer holds as
 * made (removed from outside appshot, or a reboot since). */
export function checkSharedSegments(tpl: Template): void {
  const listings = new Listings();
  for (const s of tpl.shared)
    if (SHM.check(listings, s.srid, s.skey))
      throw new AppshotError(
        `template '${tpl.name}': its shared segment ${s.srid} (virtual ${s.vrid}) is gone from the kernel (removed outside appshot, or the host restarted); nothing was cloned. Remove the template with 'appshot template rm ${tpl.name}' and make it again`,
        EXIT.inconsistent,
      );
}

function writeTemplate(home: string, tpl: Template): void {
  homeSubdir(home, 'templates');
  const file = templateFile(home, tpl.name);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openHomeFile(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC);
  try {
    writeFileSync(fd, JSON.stringify(tpl, null, 2) + '\n');
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export function loadTemplate(home: string, name: string): Template {
  checkTemplateName(name);
  const file = templateFile(home, name);
  if (!existsSync(file)) throw new AppshotError(`there is no template '${name}' in ${home}; 'appshot template list' lists them`, EXIT.failure);
  const fd = openHomeFile(file, constants.O_RDONLY);
  try {
    return JSON.parse(readFileSync(fd, 'utf8')) as Template;
  } catch (err) {
    throw new AppshotError(`template '${name}' at ${file} cannot be read (${errnoText(err)}); remove it with 'appshot template rm ${name}'`, EXIT.inconsistent);
  } finally {
    closeSync(fd);
  }
}

export function templateNames(home: string): string[] {
  const dir = templatesDir(home);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/* --- create ----------------------------------------------------------------- */

function registerTemplate(t: TableDb, name: string, aid: string, command: string[]): void {
  writeTxn(t, () => {
    if (getApp(t, aid)) throw new AppshotError(`template '${name}' already exists; remove it first with 'appshot template rm ${name}'`, EXIT.conflict);
    putApp(t, aid, {
      schema: S.SCHEMA_VERSION,
      state: S.APP_STATE.template,
      flags: 0,
      harnessSpid: process.pid,
      harnessStart: startTicks(process.pid) ?? 0,
      createdMs: Date.now(),
      endedMs: 0,
      command,
    });
  });
}

/** Removes a template's entry and every object it owns. */
function dropTemplateEntry(t: TableDb, aid: string): string[] {
  const report = endApp(t, aid, { keep: false });
  writeTxn(t, () => t.apps.removeSync(Buffer.from(aid, 'latin1')));
  return report.notes;
}

/** Makes the shared segments once, read-only (no write bits), filled from the snapshot. */
function makeSharedSegments(t: TableDb, aid: string, file: string, sharedVrids: Set<number>): SharedSegment[] {
  const made: SharedSegment[] = [];
  const r = new SnapReader(file);
  try {
    for (let s = r.next(); s; s = r.next()) {
      if (s.kind !== 'shm') {
        r.skip(s);
        continue;
      }
      const { header: rec, bytes, sum } = r.headerOf<ShmRecord>(s);
      if (bytes !== rec.size) throw r.badChecksum(s);
      if (!sharedVrids.has(rec.vrid)) {
        r.skip(s);
        continue;
      }
      const { srid } = makeSegment(t, r, s, aid, true, rec, sum);
      setPerm('shm', srid, { ...rec, mode: rec.mode & ~0o222 });
      const row = S.decodeFwdVal(t.fwd.get(S.fwdKey(aid, S.RT.shm, rec.vrid))!);
      made.push({ vrid: rec.vrid, vkey: rec.vkey, srid, skey: row.skey });
    }
  } finally {
    r.close();
  }
  return made;
}

/** The snapshot and the rules file can be read: checked before anything
 * (the home, the tables) is made. */
export function checkInputs(name: string, snapshot: string, rulesFile?: string): void {
  checkTemplateName(name);
  snapshotIdentity(snapshot);
  new SnapReader(resolve(snapshot)).close();
  if (rulesFile) readRules(rulesFile);
}

function snapshotIdentity(given: string): FileIdentity {
  const snapshot = resolve(given);
  try {
    const identity = fileIdentity(snapshot);
    if (!statSync(snapshot).isFile()) throw notAFile(statSync(snapshot).isDirectory());
    return identity;
  } catch (err) {
    throw unreadable('snapshot', given, err, "give --from the path of a snapshot file that 'appshot snapshot AID -o FILE' wrote; nothing was made");
  }
}

function readRules(rulesFile: string): string {
  try {
    return readFileSync(rulesFile, 'utf8');
  } catch (err) {
    throw unreadable('rules file', rulesFile, err, 'give --rules the path of a file of rules (see the README, Templates); nothing was made');
  }
}

export function createTemplate(t: TableDb, opts: { name: string; snapshot: string; rulesFile?: string }): Template {
  checkTemplateName(opts.name);
  if (opts.name.startsWith(TEMPLATE_AID_PREFIX))
    throw new AppshotError(
      `'${opts.name}' cannot name a template: its clones would be named ${opts.name}-N, and AIDs starting with '${TEMPLATE_AID_PREFIX}' are appshot's entries for templates; choose a name that does not start with '${TEMPLATE_AID_PREFIX}'`,
      EXIT.usage,
    );
  const aid = TEMPLATE_AID_PREFIX + opts.name;
  if (existsSync(templateFile(t.home, opts.name)) || getApp(t, aid))
    throw new AppshotError(`template '${opts.name}' already exists; remove it first with 'appshot template rm ${opts.name}'`, EXIT.conflict);
  let rules = NO_RULES;
  if (opts.rulesFile) {
    rules = parseRules(readRules(opts.rulesFile), opts.rulesFile);
  }
  // Absolute, so a clone made from any directory finds it.
  const snapshot = resolve(opts.snapshot);
  const identity = snapshotIdentity(opts.snapshot);
  // A whole snapshot: the template's own copy is what is read from here on.
  const image = isWhole(snapshot) ? copyImage(t.home, opts.name, snapshot) : undefined;
  try {
    const source = image ?? snapshot;
    const rep = inspectSnapshot(source); // every checksum, before anything is made
    const resources = classify(rep, rules, opts.rulesFile ?? '');
    checkRedirectTargets(rules, opts.rulesFile ?? '', t.home, { aid: `${opts.name}-1`, number: 1, template: opts.name });
    const warm = image ? analyzeImage(image, rules, rep.meta) : undefined;
    return makeTemplate(t, { ...opts, aid, rules, rep, resources, identity, source, warm, image: image ? fileIdentity(image) : undefined });
  } catch (err) {
    if (image) rmSync(image, { force: true });
    throw err;
  }
}

/** Whether the snapshot holds the application's processes (its META says so). */
function isWhole(file: string): boolean {
  const r = new SnapReader(file);
  try {
    const first = r.next();
    return first?.kind === 'meta' && !!r.json<SnapMeta>(first).whole;
  } finally {
    r.close();
  }
}

/** The template's entry and shared segments, then its file: all or nothing. */
function makeTemplate(
  t: TableDb,
  o: { name: string; aid: string; rulesFile?: string; rules: Rules; rep: SnapshotReport; resources: Resource[]; identity: FileIdentity; source: string; image?: FileIdentity; warm?: WarmInfo },
): Template {
  const { aid, rules, rep, resources, identity } = o;
  registerTemplate(t, o.name, aid, rep.meta.command);
  try {
    const sharedVrids = new Set(resources.filter((x) => x.kind === 'shm' && x.class === 'shared').map((x) => x.vrid));
    const shared = makeSharedSegments(t, aid, o.source, sharedVrids);
    const tpl: Template = {
      name: o.name,
      aid,
      createdAt: new Date().toISOString(),
      snapshot: identity,
      rulesFile: o.rulesFile ? resolve(o.rulesFile) : null,
      rules,
      meta: rep.meta,
      resources,
      shared,
      ...(o.image ? { image: o.image, warm: o.warm } : {}),
    };
    checkSnapshotUnchanged({ ...tpl, image: undefined }); // the snapshot not rewritten while we read (or copied) it
    writeTemplate(t.home, tpl);
    return tpl;
  } catch (err) {
    dropTemplateEntry(t, aid);
    throw err;
  }
}

/* --- clones of a template, and rm ---------------------------------------- */

/** The running applications cloned from a template. */
export function liveClones(t: TableDb, tpl: Template): string[] {
  const live: string[] = [];
  for (const { key, value } of t.apps.getRange({})) {
    const aid = key.toString('latin1');
    const app = S.decodeAppVal(value);
    if (app.state !== S.APP_STATE.running || S.cloneTemplate(aid, app.flags) !== tpl.name) continue;
    if (appLive(t, aid, app)) live.push(aid);
  }
  return live;
}

export function removeTemplate(t: TableDb, name: string, opts: { force: boolean }): string[] {
  checkTemplateName(name);
  const aid = TEMPLATE_AID_PREFIX + name;
  const file = templateFile(t.home, name);
  if (!existsSync(file) && !getApp(t, aid)) throw new AppshotError(`there is no template '${name}' in ${t.home}; 'appshot template list' lists them`, EXIT.failure);
  if (existsSync(file) && !opts.force) {
    const clones = liveClones(t, loadTemplate(t.home, name));
    if (clones.length)
      throw new AppshotError(`template '${name}' has ${clones.length} running clone(s) (${clones.join(', ')}) attached to its shared segments; end them first, or remove it anyway with --force`, EXIT.conflict);
  }
  const notes = getApp(t, aid) ? dropTemplateEntry(t, aid) : [];
  // Running clones keep their mappings of the image: the inode lives on.
  rmSync(imageFile(t.home, name), { force: true });
  rmSync(file, { force: true });
  return notes;
}
