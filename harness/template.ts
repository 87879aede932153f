import { makeClone, type Clone } from '../ts/clone.js';
import { AppshotError, EXIT } from '../ts/errors.js';
import { forgetSeeds } from '../ts/seeds.js';
import type { Balance, Publication } from '../ts/pool.js';
import type { TableDb } from '../ts/tabledb.js';
import { type Template, createTemplate, liveClones, loadTemplate, removeTemplate, templateNames } from '../ts/template.js';
import { type TemplateListRow, renderTemplate, renderTemplateList } from './views/templates.js';
import { superviseApp } from './run.js';
import type { Format } from './views/format.js';

/** `appshot template ...`: each subcommand over one open TableDb. */

export function create(t: TableDb, name: string, snapshot: string, rulesFile: string | undefined, json: boolean): void {
  const tpl = createTemplate(t, { name, snapshot, rulesFile });
  if (json) {
    process.stdout.write(JSON.stringify({ ...tpl, clones: [] }, null, 2) + '\n');
    return;
  }
  const count = (c: string) => tpl.resources.filter((r) => r.class === c).length;
  if (tpl.meta.whole) process.stderr.write(`appshot: ${coldNote(name, snapshot, tpl.meta.command)}\n`);
  process.stdout.write(
    `template '${name}' made from ${snapshot}: ${tpl.resources.length} resources (${count('shared')} shared, ${count('duplicate')} duplicate, ${count('virtualize')} virtualize, ${count('multiplex')} multiplex, ${count('network-unique')} network-unique); 'appshot template inspect ${name}' says why\n`,
  );
}

/** What a template made from a whole snapshot gives today: a clone starts
 * the command again over the template's IPC state and ports; its processes
 * are not continued from the image (issue 19). */
function coldNote(name: string, snapshot: string, command: string[]): string {
  return `${snapshot} holds the application's processes whole, but a clone of template '${name}' does not continue them: it starts its command (${command.join(' ')}) again, cold, over the template's IPC state and ports; to continue the processes themselves, use 'appshot restore ${snapshot} --aid NAME'`;
}

export function list(t: TableDb, format: Format): void {
  const rows: TemplateListRow[] = templateNames(t.home).map((name) => {
    const tpl = loadTemplate(t.home, name);
    const classes: Record<string, number> = {};
    for (const r of tpl.resources) classes[r.class] = (classes[r.class] ?? 0) + 1;
    const sharedBytes = tpl.resources.filter((r) => r.kind === 'shm' && r.class === 'shared').reduce((n, r) => n + (r.size ?? 0), 0);
    return { name, snapshot: tpl.snapshot.file, classes, sharedBytes, clones: liveClones(t, tpl) };
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
  command: string[];
  /** From starting to make it to its first process started. */
  readyMs: number;
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

function summary(c: Clone, ms: number): CloneSummary {
  const r = c.restored;
  return {
    aid: c.aid,
    command: c.command,
    readyMs: Number(ms.toFixed(1)),
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
  return (await launch(t, tpl, opts)).started;
}

/** startClone, with what was made, for clone's report. */
async function launch(t: TableDb, tpl: Template, opts: StartOptions): Promise<{ started: StartedClone; clone: Clone }> {
  const began = performance.now();
  const c = makeClone(t, tpl, { from: opts.from, command: opts.command, portRange: opts.portRange, publish: opts.publish });
  const runOpts = { home: opts.home, keep: false, noIdentity: c.noIdentity, publish: c.publish, redirects: c.redirects, balance: opts.balance, portRange: opts.portRange };
  let ended!: Promise<number>;
  await new Promise<void>((resolve) => {
    ended = superviseApp(t, c.aid, c.command, runOpts, { env: c.env, cwd: c.cwd, firstVpid: c.firstVpid }, resolve)
      .catch((err: Error) => {
        process.stderr.write(`appshot: clone '${c.aid}': ${err.message}\n`);
        return err instanceof AppshotError ? err.exitCode : EXIT.failure;
      })
      .finally(resolve);
  });
  forgetSeeds(t, c.aid); // its seeded paths are its data now
  // Ready: every object made and filled, its first process started.
  return { started: { aid: c.aid, number: c.number, readyMs: performance.now() - began, warm: false, ended }, clone: c };
}

/**
 * `appshot template clone NAME -n N [-- CMD]`: makes and starts the clones
 * one by one, each all or nothing, and supervises them all until each has
 * ended. A clone that cannot be made stops the cloning; those made run on.
 */
export async function clone(
  t: TableDb,
  name: string,
  opts: { count: number; command?: string[]; home: string; balance: Balance; portRange: { lo: number; hi: number }; json?: boolean },
): Promise<number> {
  const tpl = loadTemplate(t.home, name);
  if (tpl.meta.whole && !opts.command) process.stderr.write(`appshot: ${coldNote(name, tpl.snapshot.file, tpl.meta.command)}\n`);
  const runs: Promise<number>[] = [];
  const made: string[] = [];
  const summaries: CloneSummary[] = [];
  let failure: AppshotError | undefined;
  let next = 1;
  const began = performance.now();
  for (let i = 0; i < opts.count; i++) {
    let l: Awaited<ReturnType<typeof launch>>;
    try {
      l = await launch(t, tpl, { from: next, command: opts.command, home: opts.home, balance: opts.balance, portRange: opts.portRange });
    } catch (err) {
      failure = err instanceof AppshotError ? err : new AppshotError(String(err), EXIT.failure);
      break;
    }
    const { started: s, clone: c } = l;
    next = c.number + 1;
    made.push(c.aid);
    runs.push(s.ended);
    const copy = c.restored.copySeconds * 1000;
    summaries.push(summary(c, s.readyMs));
    process.stderr.write(`appshot: clone '${c.aid}' of template '${name}' ready in ${s.readyMs.toFixed(1)} ms (copying ${copy.toFixed(1)} ms of it): ${describe(c)}\n`);
  }
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
