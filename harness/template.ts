import { makeClone, type Clone } from '../ts/clone.js';
import { AppshotError, EXIT } from '../ts/errors.js';
import { forgetSeeds } from '../ts/seeds.js';
import type { Balance, Publication } from '../ts/pool.js';
import type { TableDb } from '../ts/tabledb.js';
import { type Template, createTemplate, liveClones, loadTemplate, removeTemplate, templateNames } from '../ts/template.js';
import { type TemplateListRow, cloneMode, renderTemplate, renderTemplateList } from './views/templates.js';
import { superviseApp } from './run.js';
import { describeBlockers } from '../ts/warm.js';
import type { Format } from './views/format.js';

/** `appshot template ...`: each subcommand over one open TableDb. */

export function create(t: TableDb, name: string, snapshot: string, rulesFile: string | undefined, json: boolean): void {
  const tpl = createTemplate(t, { name, snapshot, rulesFile });
  if (json) {
    process.stdout.write(JSON.stringify({ ...tpl, clones: [] }, null, 2) + '\n');
    return;
  }
  const count = (c: string) => tpl.resources.filter((r) => r.class === c).length;
  if (tpl.warm) process.stderr.write(`appshot: ${warmNote(tpl)}\n`);
  process.stdout.write(
    `template '${name}' made from ${snapshot}: ${tpl.resources.length} resources (${count('shared')} shared, ${count('duplicate')} duplicate, ${count('virtualize')} virtualize, ${count('multiplex')} multiplex, ${count('network-unique')} network-unique); 'appshot template inspect ${name}' says why\n`,
  );
}

/** What clones of a whole snapshot's template do: continue its processes,
 * or (something in them cannot be continued twice) need --cold. */
export function warmNote(tpl: Template): string {
  const w = tpl.warm!;
  if (w.able)
    return `clones of template '${tpl.name}' continue the ${w.processes} process(es) of ${tpl.snapshot.file} where they were (warm), their memory mapped copy-on-write from the template's copy ${tpl.image!.file}; --cold starts the command (${tpl.meta.command.join(' ')}) instead${envNote(tpl)}`;
  return `template '${tpl.name}' cannot be cloned warm: ${describeBlockers(w.blockers)}; its clones need --cold (they start the command ${tpl.meta.command.join(' ')} again over the template's IPC state and ports)`;
}

/** SET ENV cannot reach a running process's memory: said once, at create. */
function envNote(tpl: Template): string {
  const names = tpl.rules.env.map((e) => e.name);
  return names.length ? `; a warm clone keeps the saved environment, so the rules' SET ENV (${names.join(', ')}) applies to cold clones only` : '';
}

/** A template made from a whole snapshot before warm clones kept an image:
 * its clones start the command again, cold. */
function coldNote(name: string, snapshot: string, command: string[]): string {
  return `template '${name}' was made before templates kept their snapshot's processes: a clone starts its command (${command.join(' ')}) again, cold, over the template's IPC state and ports; to clone it warm (continuing the processes of ${snapshot}), make it again: appshot template rm ${name}, then appshot template create ${name} --from ${snapshot}`;
}

export function list(t: TableDb, format: Format): void {
  const rows: TemplateListRow[] = templateNames(t.home).map((name) => {
    const tpl = loadTemplate(t.home, name);
    const classes: Record<string, number> = {};
    for (const r of tpl.resources) classes[r.class] = (classes[r.class] ?? 0) + 1;
    const sharedBytes = tpl.resources.filter((r) => r.kind === 'shm' && r.class === 'shared').reduce((n, r) => n + (r.size ?? 0), 0);
    return { name, snapshot: tpl.snapshot.file, mode: cloneMode(tpl), classes, sharedBytes, clones: liveClones(t, tpl) };
  });
  process.stdout.write((format === 'json' ? JSON.stringify(rows, null, 2) : renderTemplateList(rows, format)) + '\n');
}

export function inspect(t: TableDb, name: string, format: Format): void {
  const tpl = loadTemplate(t.home, name);
  const clones = liveClones(t, tpl);
  process.stdout.write((format === 'json' ? JSON.stringify({ ...tpl, clones }, null, 2) : renderTemplate(tpl, clones, format)) + '\n');
}

export function rm(t: TableDb, name: string, force: boolean): void {
  for (const note of removeTemplate(t, name, { force })) process.stderr.write(`appshot: ${note}\n`);
  process.stdout.write(`template '${name}' removed\n`);
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function describe(c: Clone): string {
  const r = c.restored;
  const parts = [`${r.shared} shared segment(s) mapped`, `${r.segments} segment(s) copied (${mib(r.shmBytes)})`, `${r.sems} semaphore set(s)`, `${r.queues} queue(s)`];
  if (c.leases.length) parts.push(`ports ${c.leases.join(', ')}`);
  if (c.publish.length) parts.push(`in the pool of ${c.publish.map((p) => `public port ${p.public}`).join(', ')}`);
  if (c.redirects.length) parts.push(`${c.redirects.length} path(s) redirected`);
  return parts.join(', ');
}

/** A clone as `template clone --json` reports it. */
export interface CloneSummary {
  aid: string;
  /** Continued from the template's image (false: its command started). */
  warm: boolean;
  command: string[];
  /** From starting to make it until its processes run (warm: restored;
   * cold: its first process started). */
  readyMs: number;
  /** Of that, making its objects, rows and leases (the rest: starting it). */
  makeMs: number;
  /** Of that, filling its own shared memory from the snapshot. */
  copyMs: number;
  /** The template's segments mapped into it. */
  shared: number;
  segments: number;
  shmBytes: number;
  sems: number;
  queues: number;
  messages: number;
  /** Ports leased to it, as "9090/tcp -> 20001". */
  ports: string[];
  publish: { public: number; virtual: number }[];
  redirects: { from: string; to: string }[];
}

function summary(c: Clone, s: StartedClone, makeMs: number): CloneSummary {
  const r = c.restored;
  return {
    aid: c.aid,
    warm: s.warm,
    command: c.command,
    readyMs: Number(s.readyMs.toFixed(1)),
    makeMs: Number(makeMs.toFixed(1)),
    copyMs: Number((r.copySeconds * 1000).toFixed(1)),
    shared: r.shared,
    segments: r.segments,
    shmBytes: r.shmBytes,
    sems: r.sems,
    queues: r.queues,
    messages: r.messages,
    ports: c.leases,
    publish: c.publish.map((p) => ({ public: p.public, virtual: p.virtual })),
    redirects: c.redirects.map((x) => ({ from: x.from, to: x.to })),
  };
}

/** One clone made and started (serve's unit, and clone's). */
export interface StartedClone {
  aid: string;
  number: number;
  /** From starting to make it until its processes run. */
  readyMs: number;
  /** Continued from the template's image (false: its command started). */
  warm: boolean;
  /** Its exit status, once its last process is gone and it is cleaned up. */
  ended: Promise<number>;
}

export interface StartOptions {
  /** The lowest clone number to try (the next free one is taken). */
  from: number;
  /** Start the command over the template's IPC state, not continue the image. */
  cold?: boolean;
  /** The command to start instead of the saved one (implies cold). */
  command?: string[];
  home: string;
  balance: Balance;
  portRange: { lo: number; hi: number };
  /** The multiplexed ports, instead of the template's (serve's --publish). */
  publish?: Publication[];
}

/**
 * Makes one clone (all or nothing) and starts it; resolves once its
 * processes run (warm: restored and detached; cold: the command started).
 * Throws AppshotError when it cannot be made.
 */
export async function startClone(t: TableDb, tpl: Template, opts: StartOptions): Promise<StartedClone> {
  return (await start(t, tpl, prepare(t, tpl, opts), opts)).started;
}

/** Whether clones continue the template's image: the default for a whole
 * snapshot's template; --cold or a command starts the command instead. A
 * template made before warm clones has no image: cold, as then. */
function wantsWarm(tpl: Template, opts: { cold?: boolean; command?: string[] }): boolean {
  return !opts.cold && !opts.command && !!tpl.image;
}

/** A clone made (its objects, rows, leases), not started yet. */
interface Prepared {
  clone: Clone;
  began: number;
  /** Making its objects, rows and leases (the rest of readyMs is starting it). */
  makeMs: number;
}

function prepare(t: TableDb, tpl: Template, opts: StartOptions): Prepared {
  const began = performance.now();
  const warm = wantsWarm(tpl, opts);
  const clone = makeClone(t, tpl, { from: opts.from, command: opts.command, portRange: opts.portRange, publish: opts.publish, warm });
  return { clone, began, makeMs: performance.now() - began };
}

/** Starts a made clone: its supervisor runs the restorer on the template's
 * image (warm, memory mapped copy-on-write) or the command (cold). */
async function start(t: TableDb, tpl: Template, p: Prepared, opts: StartOptions): Promise<{ started: StartedClone; clone: Clone; makeMs: number }> {
  const c = p.clone;
  const runOpts = { home: opts.home, keep: false, noIdentity: c.noIdentity, publish: c.publish, redirects: c.redirects, balance: opts.balance, portRange: opts.portRange };
  let readyMs = 0;
  let restored = false;
  let ended!: Promise<number>;
  await new Promise<void>((resolve) => {
    const ready = () => {
      readyMs = performance.now() - p.began;
      resolve();
    };
    // Warm: ready once the restorer's processes run (the supervisor's root line).
    const as = c.image
      ? { image: c.image, mapPages: true, clone: { moves: c.moves }, onRestored: () => ((restored = true), ready()) }
      : { env: c.env, cwd: c.cwd, firstVpid: c.firstVpid };
    ended = superviseApp(t, c.aid, c.command, runOpts, as, c.image ? undefined : ready)
      .catch((err: Error) => {
        process.stderr.write(`appshot: clone '${c.aid}': ${err.message}\n`);
        return err instanceof AppshotError ? err.exitCode : EXIT.failure;
      })
      .finally(resolve);
  });
  forgetSeeds(t, c.aid); // its seeded paths are its data now
  if (c.image && !restored) {
    const code = await ended;
    throw new AppshotError(
      `clone '${c.aid}' of template '${tpl.name}' could not be made: its processes could not be restored from ${c.image} (the restorer's reason is above, status ${code}); nothing of it is left. Clone with --cold to start the command instead`,
      EXIT.conflict,
    );
  }
  return { started: { aid: c.aid, number: c.number, readyMs, warm: !!c.image, ended }, clone: c, makeMs: p.makeMs };
}

/** The line a clone made prints. */
function readyLine(name: string, s: StartedClone, c: Clone): string {
  const copy = `${(c.restored.copySeconds * 1000).toFixed(1)} ms`;
  const how = s.warm ? `, warm (its processes continued from the template's image, memory mapped copy-on-write; copying ${copy} of shared memory)` : ` (copying ${copy} of it)`;
  return `appshot: clone '${c.aid}' of template '${name}' ready in ${s.readyMs.toFixed(1)} ms${how}: ${describe(c)}\n`;
}

/**
 * `appshot template clone NAME -n N [--cold] [-- CMD]`: makes the clones,
 * each all or nothing, and supervises them all until each has ended. Warm
 * clones are restored side by side (each made, then started without
 * waiting for the one before); cold ones one after the other. A clone that
 * cannot be made stops the cloning; those made run on.
 */
export async function clone(
  t: TableDb,
  name: string,
  opts: { count: number; command?: string[]; cold?: boolean; home: string; balance: Balance; portRange: { lo: number; hi: number }; json?: boolean },
): Promise<number> {
  const tpl = loadTemplate(t.home, name);
  if (tpl.meta.whole && !tpl.image && !opts.command && !opts.cold) process.stderr.write(`appshot: ${coldNote(name, tpl.snapshot.file, tpl.meta.command)}\n`);
  const runs: Promise<number>[] = [];
  const made: string[] = [];
  const summaries: CloneSummary[] = [];
  const failures: AppshotError[] = [];
  const starting: Promise<void>[] = [];
  const asError = (err: unknown) => (err instanceof AppshotError ? err : new AppshotError(String(err), EXIT.failure));
  const sopts: StartOptions = { from: 1, command: opts.command, cold: opts.cold, home: opts.home, balance: opts.balance, portRange: opts.portRange };
  const began = performance.now();
  for (let i = 0; i < opts.count; i++) {
    let p: Prepared;
    try {
      p = prepare(t, tpl, sopts);
    } catch (err) {
      failures.push(asError(err));
      break;
    }
    sopts.from = p.clone.number + 1;
    const run = start(t, tpl, p, sopts).then(
      ({ started: s, clone: c, makeMs }) => {
        made.push(c.aid);
        runs.push(s.ended);
        summaries.push(summary(c, s, makeMs));
        process.stderr.write(readyLine(name, s, c));
      },
      (err) => void failures.push(asError(err)),
    );
    if (p.clone.image) starting.push(run);
    else await run;
    if (failures.length) break;
  }
  await Promise.all(starting);
  const failure = failures[0];
  // Warm clones got ready in any order: listed by number.
  const byNumber = (a: string, b: string) => Number(a.slice(name.length + 1)) - Number(b.slice(name.length + 1));
  made.sort(byNumber);
  summaries.sort((a, b) => byNumber(a.aid, b.aid));
  if (failure) {
    const rest = opts.count - made.length;
    process.stderr.write(
      `appshot: made ${made.length} of ${opts.count} clones of template '${name}'${made.length ? ` (${made.join(', ')}, running)` : ''}; the remaining ${rest} ${rest === 1 ? 'was' : 'were'} not made: ${failure.message}\n`,
    );
  } else {
    const which = made.length === 1 ? `clone '${made[0]}' of template '${name}' is` : `all ${made.length} clones of template '${name}' are`;
    process.stderr.write(`appshot: ${which} running, made in ${((performance.now() - began) / 1000).toFixed(2)} s\n`);
  }
  // With --json, what was made, once, before the clones' own output goes on.
  if (opts.json) process.stdout.write(JSON.stringify({ template: name, requested: opts.count, clones: summaries, error: failure?.message ?? null }) + '\n');
  const codes = await Promise.all(runs);
  t.env.close();
  return failure ? failure.exitCode : (codes.find((c) => c !== 0) ?? 0);
}
