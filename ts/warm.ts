import { chmodSync, constants, copyFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type ProcHeader, filesById, readProcessSection } from './checkpoint.js';
import { AppshotError, EXIT, errnoText } from './errors.js';
import { homeSubdir, templatesDir } from './home.js';
import { type Redirect, normalizePath, redirectPath } from './redirect.js';
import type { Rules } from './rules.js';
import type { SnapMeta } from './snapshot.js';
import { SnapReader } from './snapfile.js';

/**
 * Warm clones (issue 19): a template made from a whole snapshot keeps its
 * own read-only copy of the image in the home, and each clone is a restore
 * of that copy under the clone's AID, its private memory mapped from the
 * copy copy-on-write (every clone shares the page cache of one file). This
 * file says whether an image can be cloned so (what in it cannot be
 * continued twice), keeps the copy, and checks before each clone that what
 * the image needs from the host is still as it was.
 */

/** What keeps a template from being cloned warm: the resource, and why. */
export interface Blocker {
  resource: string;
  why: string;
}

/** A file the image's processes map, as it was at the snapshot: its pages
 * not stored in the image come from it, so it must not have changed. */
export interface MappedFile {
  path: string;
  size: number;
  /** Nanoseconds, device and inode as the dumper wrote them (hex). */
  mtime: string;
  dev: string;
  ino: string;
  /** The first process that maps it, as a person names it. */
  by: string;
}

/** A file or directory a process had open (not at 0-2, not redirected): the restorer opens it again by path. */
export interface OpenedFile {
  path: string;
  by: string;
}

export interface WarmInfo {
  /** Clones continue the image's processes (blockers is empty). */
  able: boolean;
  blockers: Blocker[];
  mapped: MappedFile[];
  opened: OpenedFile[];
  /** The processes the image holds. */
  processes: number;
}

/** The template's copy of its image, in its home. */
export function imageFile(home: string, name: string): string {
  return join(templatesDir(home), `${name}.image`);
}

/**
 * Copies the snapshot into the home as the template's image: read-only
 * (0400), a reflink (copy-on-write, no bytes copied) where the filesystem
 * can make one, else a full copy. The clones map it: the operator's file
 * may be rewritten or deleted later, and a page of a MAP_PRIVATE mapping
 * not yet copied would show a rewrite (or SIGBUS after a truncation).
 */
export function copyImage(home: string, name: string, snapshot: string): string {
  homeSubdir(home, 'templates');
  const file = imageFile(home, name);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    copyFileSync(snapshot, tmp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
    chmodSync(tmp, 0o400);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new AppshotError(`cannot copy the snapshot ${snapshot} into the template's image ${file}: ${errnoText(err)}; free space in the home or choose another APPSHOT_HOME; nothing was made`, EXIT.failure);
  }
  return file;
}

const who = (p: ProcHeader) => `process ${p.vpid} (${p.comm})`;

/** The path the program named for system path p: the source application's
 * own redirections undone (its image holds the kernel's paths). */
function programPath(redirects: Redirect[], p: string): string {
  const back = redirects.map((r) => ({ from: r.to, to: r.from }));
  return redirectPath(back, p);
}

/** Which REDIR rule (by its line) covers the program's path p, if any. */
function ruleCovering(rules: Rules, p: string): number | undefined {
  for (const r of rules.redirects) {
    // A marker target: p is covered when the redirection applies to it.
    if (redirectPath([{ from: normalizePath(r.from.text), to: '\0' }], p).startsWith('\0')) return r.from.line;
  }
  return undefined;
}

/** POSIX shared memory objects (shm_open) live here. A program names its
 * own at run time (postgres: /PostgreSQL.<random>), so cold clones each make
 * their own; warm clones would all continue with the one name the image
 * holds, and share that object: one clone's writes in every other. */
const POSIX_SHM = '/dev/shm/';
const posixShmWhy = (path: string, how: string) =>
  `${path} is a POSIX shared memory object (shm_open) the process ${how}: every clone would share that one object, which the program made for itself (clones get SysV objects of their own, not POSIX ones); configure the program to use SysV shared memory or files under a REDIR rule`;

/** The descriptors of one process that a clone cannot continue. */
function descriptorBlockers(p: ProcHeader, files: Map<string, Record<string, unknown>>, rules: Rules, meta: SnapMeta, out: Blocker[], opened: OpenedFile[]): void {
  for (const d of p.fds ?? []) {
    const f = files.get(String(d.ofd));
    if (!f) continue;
    const resource = `descriptor ${d.fd} of ${who(p)}`;
    const kind = String(f.kind);
    if (kind === 'tcp-reset') {
      const peer = f.peer ? ` with ${String(f.peer)}:${String(f.peer_port)}` : '';
      out.push({ resource, why: `an established TCP connection${peer}, outside the application: one connection cannot be continued by several clones` });
      continue;
    }
    const path = typeof f.path === 'string' ? f.path : undefined;
    // A redirected path is opened at each clone's own place (the restorer's --moved).
    const redirected = path !== undefined && ruleCovering(rules, programPath(meta.redirects ?? [], path)) !== undefined;
    if (kind === 'unix-listen' && !redirected) {
      out.push({
        resource,
        why: path
          ? `a Unix socket listening at ${path}: every clone would listen at that one path (a REDIR rule covering it gives each clone its own)`
          : `a Unix socket listening at the abstract name ${String(f.abstract)}: every clone would listen at that one name`,
      });
      continue;
    }
    if (path?.startsWith(POSIX_SHM) && !redirected) {
      out.push({ resource, why: posixShmWhy(path, 'holds open') });
      continue;
    }
    // At 0-2 a file is the clone command's own output (the restorer's --own-stdio).
    const std = typeof f.std === 'number';
    if (path && !redirected && !std && (kind === 'file' || kind === 'dir')) opened.push({ path, by: resource });
  }
}

/** The file mappings of one process; a redirected one blocks (its pages in
 * the image are the template's file's). */
function mappingBlockers(p: ProcHeader, rules: Rules, meta: SnapMeta, out: Blocker[], mapped: Map<string, MappedFile>): void {
  const home = (p as { home?: string }).home;
  for (const m of p.mappings as (ProcHeader['mappings'][number] & Record<string, unknown>)[]) {
    // Private and shared file mappings; the home's own (the shim's tables) are the clone's home's.
    if ((m.kind !== 'file' && m.kind !== 'shared') || !m.path || mapped.has(m.path)) continue;
    if (home && m.path.startsWith(home + '/')) continue;
    if (m.kind === 'shared' && m.path.startsWith(POSIX_SHM)) {
      // Named once, for the first process that maps it (postgres: every one).
      if (!out.some((b) => b.why.startsWith(`${m.path} `))) out.push({ resource: `the mapping of ${m.path} in ${who(p)}`, why: posixShmWhy(m.path, 'maps shared') });
      continue;
    }
    const line = ruleCovering(rules, programPath(meta.redirects ?? [], m.path));
    if (line !== undefined) {
      out.push({ resource: `the mapping of ${m.path} in ${who(p)}`, why: `the REDIR rule at line ${line} redirects that file: a warm clone would go on with the template's file, not its own` });
      continue;
    }
    mapped.set(m.path, { path: m.path, size: Number(m.size), mtime: String(m.mtime), dev: String(m.dev), ino: String(m.ino), by: who(p) });
  }
}

/** Reads the image's processes (FILES and PROC sections, checksums
 * checked) and says whether its clones can continue them. */
export function analyzeImage(file: string, rules: Rules, meta: SnapMeta): WarmInfo {
  const blockers: Blocker[] = [];
  const opened: OpenedFile[] = [];
  const mapped = new Map<string, MappedFile>();
  let files = new Map<string, Record<string, unknown>>();
  let processes = 0;
  const r = new SnapReader(file);
  try {
    for (let s = r.next(); s; s = r.next()) {
      if (s.kind === 'files') files = filesById(readProcessSection(r, s)) as Map<string, Record<string, unknown>>;
      else if (s.kind === 'proc') {
        const p = readProcessSection<ProcHeader>(r, s);
        processes++;
        descriptorBlockers(p, files, rules, meta, blockers, opened);
        mappingBlockers(p, rules, meta, blockers, mapped);
      } else r.skip(s);
    }
  } finally {
    r.close();
  }
  if (!processes) blockers.push({ resource: 'the snapshot', why: 'it holds no process (taken with --ipc-only, or with no process running)' });
  return { able: blockers.length === 0, blockers, mapped: [...mapped.values()], opened, processes };
}

/** Why mapped file m is not as the image saw it, or null. As the restorer
 * checks it (mem_check_files): size, modification time, and the inode on
 * the same device. */
function mappedChanged(m: MappedFile): string | null {
  let st;
  try {
    st = statSync(m.path, { bigint: true });
  } catch (err) {
    return `it is gone (${errnoText(err)})`;
  }
  const sameDev = st.dev === BigInt(m.dev);
  if (st.size !== BigInt(m.size) || st.mtimeNs !== BigInt(m.mtime) || (sameDev && st.ino !== BigInt(m.ino)))
    return 'it changed since the snapshot (size, modification time or inode differ)';
  return null;
}

/** What a warm clone of the template needs from the host, checked before
 * anything of the clone is made: throws (exit 3) naming the resource. */
export function checkWarm(name: string, warm: WarmInfo): void {
  if (!warm.able) throw notWarm(name, warm.blockers);
  for (const m of warm.mapped) {
    const why = mappedChanged(m);
    if (why) throw notWarm(name, [{ resource: `the file ${m.path}, which ${m.by} maps`, why: `${why}; its pages the image does not hold would come from the new file` }]);
  }
  for (const f of warm.opened) {
    try {
      statSync(f.path);
    } catch (err) {
      throw notWarm(name, [{ resource: `the file ${f.path}, ${f.by}`, why: `it cannot be opened again (${errnoText(err)})` }]);
    }
  }
}

export function describeBlockers(blockers: Blocker[]): string {
  return blockers.map((b) => `${b.resource}: ${b.why}`).join('; ');
}

function notWarm(name: string, blockers: Blocker[]): AppshotError {
  return new AppshotError(
    `template '${name}' cannot be cloned warm: ${describeBlockers(blockers)}; clone it with --cold to start its command again instead`,
    EXIT.conflict,
  );
}
