import { closeSync, existsSync } from 'node:fs';
import { AppshotError, EXIT } from '../ts/errors.js';
import { templateFile } from '../ts/home.js';
import { constants } from 'node:os';
import { killApp, stopApp } from '../ts/lifecycle.js';
import { type Balance, type PoolStatus, type Publication, type ScaleEvent, type Scaler, poolStatus, publishSpec, scalePool } from '../ts/pool.js';
import {
  BUSY_MS,
  RETIRED_KEPT,
  type ServeInstance,
  type ServeRetired,
  growReason,
  lockServe,
  orphansOf,
  processStart,
  readServeState,
  retireChoice,
  unlockServe,
  writeServeState,
} from '../ts/serve.js';
import { processesLeft } from '../ts/supervision.js';
import type { TableDb } from '../ts/tabledb.js';
import { type Template, loadTemplate } from '../ts/template.js';
import { checkWarm } from '../ts/warm.js';
import * as S from '../tables/schema.js';
import { portHolder } from './run.js';
import { startClone } from './template.js';

/**
 * `appshot template serve NAME --publish PUBLIC:VIRTUAL`: the pool daemon
 * of PUBLIC holds the port and tells this command (its scaler, ts/pool.ts
 * scalePool) when connections wait that no instance can take; this command
 * makes clones of the template for them (up to --max), retires those idle
 * for --idle seconds (down to --min), replaces those that end by themselves
 * (up to --min), and logs one line per decision. Its state (ts/serve.ts) is
 * what `appshot ps` shows. SIGINT or SIGTERM ends it and its instances;
 * SIGKILL leaves them running, for the next serve of the template to adopt
 * or `appshot gc` to end.
 */

export interface ServeOptions {
  publish: Publication;
  min: number;
  max: number;
  idleS: number;
  balance: Balance;
  /** Open connections an instance is given at most (0: no limit). */
  conns: number;
  cold: boolean;
  home: string;
  portRange: { lo: number; hi: number };
}

/** How often the pool's status is read: idle times, a need whose event was
 * lost, adopted instances' ends. */
const POLL_MS = 250;
/** After a clone that could not be made, the next try waits this long. */
const RETRY_MS = 1000;
/** How long a retired instance has to end after SIGTERM before SIGKILL. */
const RETIRE_GRACE_MS = 5000;
const { SIGTERM, SIGKILL } = constants.signals;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

interface Instance {
  info: ServeInstance;
  /** Asked for at (performance.now()). */
  asked: number;
  /** Its program listens: it is in the pool. */
  listening: boolean;
  /** Why it is being retired, once it is. */
  retiring?: string;
  /** SIGTERM sent (drained first). */
  stopping?: boolean;
  /** One this command started: its status once it is gone and cleaned up. */
  ended?: Promise<number>;
}

/**
 * The template, or a refusal naming the reason: a name that is not there,
 * a port its program never used (exit 2); a warm clone that cannot be made
 * (checkWarm: exit 3). A warm clone continues the program's own listening
 * socket: the restorer hands it to the pool of the port the clone publishes,
 * published when snapshotted or not.
 */
function templateOf(t: TableDb, name: string, virtual: number, cold: boolean): Template {
  if (!existsSync(templateFile(t.home, name))) throw new AppshotError(`there is no template '${name}' in ${t.home}; 'appshot template list' lists them, 'appshot template create' makes one`, EXIT.usage);
  const tpl = loadTemplate(t.home, name);
  const ports = tpl.resources.filter((r) => r.kind === 'port' && S.decodePortId(r.vrid).proto === 'tcp');
  const tcp = ports.map((r) => S.decodePortId(r.vrid).port);
  if (tcp.length && !tcp.includes(virtual))
    throw new AppshotError(`template '${name}' has no TCP port ${virtual} to publish (its program used ${tcp.join(', ')}); give --publish PUBLIC:${tcp[0]}`, EXIT.usage);
  if (cold || !tpl.image || !tpl.warm) return tpl;
  checkWarm(name, tpl.warm);
  return tpl;
}

class Serving {
  private readonly instances = new Map<string, Instance>();
  /** Clones being made now (their AID not known yet). */
  private making = 0;
  private readonly retired: ServeRetired[] = [];
  private readonly joinedEarly = new Set<string>();
  private readonly startedMs = Date.now();
  private scaler?: Scaler;
  private next = 1;
  private retryAt = 0;
  private polling = false;
  private ending = false;
  private timer?: NodeJS.Timeout;
  private readonly ends: Promise<unknown>[] = [];
  private done!: () => void;
  readonly finished = new Promise<void>((resolve) => (this.done = resolve));

  constructor(
    private readonly t: TableDb,
    private readonly tpl: Template,
    private readonly o: ServeOptions,
  ) {}

  private log(line: string): void {
    process.stderr.write(`appshot: serve ${this.tpl.name} (port ${this.o.publish.public}): ${line}\n`);
  }

  /** Instances running and not being retired, and those being made or not listening yet. */
  private size() {
    let live = 0;
    let starting = this.making;
    for (const i of this.instances.values()) {
      if (i.retiring) continue;
      if (i.listening) live++;
      else starting++;
    }
    return { live, starting, min: this.o.min, max: this.o.max, conns: this.o.conns };
  }

  async start(adopt: { aids: string[]; from?: number }): Promise<void> {
    const p = this.o.publish;
    this.scaler = await scalePool(this.o.home, p.public, { name: this.tpl.name, balance: this.o.balance, conns: this.o.conns, holder: portHolder(this.t, p.public), host: p.host }, (e) => this.onEvent(e));
    for (const aid of adopt.aids) this.adopt(aid, adopt.from);
    this.save();
    const limits = `--min ${this.o.min}, --max ${this.o.max}, --idle ${this.o.idleS} s, --conns ${this.o.conns || 'no limit'}, --balance ${this.o.balance}`;
    this.log(`serving ${publishSpec(p)} (${limits}); ${this.instances.size} instance(s) adopted; pid ${process.pid}`);
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    this.fill();
  }

  /** An instance a killed serving command left running: ours now. It ends
   * by stopApp (its harness is gone), which cleans up after it. */
  private adopt(aid: string, from?: number): void {
    const why = `adopted: the serving command that started it${from ? ` (pid ${from})` : ''} was killed`;
    this.instances.set(aid, { info: { aid, startedMs: Date.now(), why, warm: false, adopted: true }, asked: performance.now(), listening: false });
    this.log(`${why}; ${aid} goes on serving`);
  }

  private onEvent(e: ScaleEvent): void {
    if (this.ending) return;
    if (e.kind === 'need') this.grow(e);
    else if (e.kind === 'joined') this.joined(e.aid);
    else if (e.kind === 'gone') this.log(`${e.aid} left the pool`);
    else this.log('the pool daemon ended and a new one took the pool over');
  }

  private joined(aid: string): void {
    const i = this.instances.get(aid);
    if (!i) {
      this.joinedEarly.add(aid); // before startClone returned
      return;
    }
    if (i.listening) return;
    i.listening = true;
    if (!i.info.adopted) i.info.listeningMs = Number((performance.now() - i.asked).toFixed(1));
    // Recorded before it is told: a serve killed right after its line leaves the instance in its state.
    this.save();
    if (!i.info.adopted) this.log(`${aid} listens, ${i.info.listeningMs} ms after it was asked for; waiting connections go to it`);
  }

  private grow(need: { held: number; oldestMs: number }): void {
    if (Date.now() < this.retryAt) return;
    // A connection for an instance being retired: it stays.
    const draining = [...this.instances.values()].find((i) => i.retiring && !i.stopping);
    if (draining && need.held) {
      draining.retiring = undefined;
      this.scaler!.undrain(draining.info.aid);
      this.log(`kept ${draining.info.aid}: connections came while it was being retired`);
      return;
    }
    const why = growReason(need, this.size());
    if (why) void this.startOne(why);
  }

  /** Up to --min. */
  private fill(): void {
    const n = this.size();
    for (let k = n.live + n.starting; k < this.o.min && !this.ending && Date.now() >= this.retryAt; k++) void this.startOne(`below --min ${this.o.min} (${k} running)`);
  }

  private async startOne(why: string): Promise<void> {
    this.making++;
    const asked = performance.now();
    try {
      const c = await startClone(this.t, this.tpl, {
        from: this.next,
        cold: this.o.cold,
        home: this.o.home,
        balance: this.o.balance,
        portRange: this.o.portRange,
        publish: [this.o.publish],
      });
      this.next = c.number + 1;
      const readyMs = Number(c.readyMs.toFixed(1));
      this.instances.set(c.aid, { info: { aid: c.aid, startedMs: Date.now(), why, warm: c.warm, readyMs }, asked, listening: false, ended: c.ended });
      this.save();
      this.log(`started ${c.aid} (${c.warm ? 'warm' : 'cold'}, running in ${readyMs} ms): ${why}`);
      this.ends.push(c.ended.then((code) => this.ended(c.aid, `status ${code}`)));
      if (this.joinedEarly.delete(c.aid)) this.joined(c.aid);
    } catch (err) {
      this.retryAt = Date.now() + RETRY_MS;
      this.log(`could not start an instance (${why}): ${(err as Error).message}; trying again in ${RETRY_MS / 1000} s`);
    } finally {
      this.making--;
      this.save();
    }
  }

  /** An instance is gone and cleaned up: retired, or ended by itself. */
  private ended(aid: string, status: string): void {
    const i = this.instances.get(aid);
    if (!i) return;
    this.instances.delete(aid);
    const why = i.retiring ?? `ended by itself (${status}); the connections it had not taken went to another instance`;
    this.retired.push({ aid, endedMs: Date.now(), why });
    if (this.retired.length > RETIRED_KEPT) this.retired.shift();
    this.save();
    if (!this.ending) this.log(i.retiring ? `retired ${aid}: ${why}` : `${aid} ${why}`);
    if (!this.ending) this.fill();
  }

  /** SIGTERM to the instance's processes, SIGKILL after RETIRE_GRACE_MS.
   * One this command started is cleaned up by its supervision here (ended);
   * an adopted one, whose harness is gone, by stopApp, as gc would. */
  private async stop(aid: string): Promise<void> {
    const i = this.instances.get(aid);
    if (!i || i.stopping) return;
    i.stopping = true;
    if (i.ended) {
      killApp(this.t, aid, SIGTERM);
      const gone = await Promise.race([i.ended.then(() => true), sleep(RETIRE_GRACE_MS).then(() => false)]);
      if (!gone) killApp(this.t, aid, SIGKILL);
      await i.ended;
      return;
    }
    try {
      await stopApp(this.t, aid, RETIRE_GRACE_MS);
    } catch (err) {
      this.log(`could not stop ${aid}: ${(err as Error).message}`);
    }
    this.ended(aid, 'stopped');
  }

  /** Each POLL_MS: a need whose event was lost, idle instances to retire,
   * drained ones to stop, adopted ones that ended, --min after a failure. */
  private async poll(): Promise<void> {
    if (this.polling || this.ending) return;
    this.polling = true;
    try {
      const st = await poolStatus(this.o.home, this.o.publish.public).catch(() => null);
      if (!st || this.ending) return;
      if (st.held || st.oldest_ms >= BUSY_MS) this.grow({ held: st.held, oldestMs: st.oldest_ms });
      this.checkInstances(st);
      this.retireIdle(st);
      this.fill(); // after a clone that could not be made, once RETRY_MS has passed
    } finally {
      this.polling = false;
    }
  }

  private checkInstances(st: PoolStatus): void {
    const inPool = new Map(st.instances.map((x) => [x.aid, x]));
    for (const [aid, i] of this.instances) {
      const x = inPool.get(aid);
      if (x && !i.listening) this.joined(aid);
      // Drained: nothing handed is left to take or serve.
      if (i.retiring && !i.stopping && (!x || (x.active === 0 && x.unacked === 0))) void this.stop(aid);
      if (i.info.adopted && !i.stopping && !processesLeft(this.t, aid).length) void this.stop(aid);
    }
  }

  private retireIdle(st: PoolStatus): void {
    const ours = st.instances.filter((x) => {
      const i = this.instances.get(x.aid);
      return i && i.listening && !i.retiring && !x.draining;
    });
    let live = this.size().live;
    for (const aid of retireChoice(ours.map((x) => ({ aid: x.aid, idleMs: x.idle_ms })), { live, min: this.o.min, idleS: this.o.idleS })) {
      const i = this.instances.get(aid)!;
      const idle = ours.find((x) => x.aid === aid)!.idle_ms;
      i.retiring = `idle ${(idle / 1000).toFixed(1)} s (--idle ${this.o.idleS}), ${--live} left (--min ${this.o.min})`;
      this.scaler!.drain(aid);
    }
  }

  private save(): void {
    const p = this.o.publish;
    writeServeState(this.o.home, {
      template: this.tpl.name,
      pid: process.pid,
      startTicks: processStart(),
      startedMs: this.startedMs,
      public: p.public,
      virtual: p.virtual,
      ...(p.host !== undefined ? { host: p.host } : {}),
      min: this.o.min,
      max: this.o.max,
      idleS: this.o.idleS,
      conns: this.o.conns,
      balance: this.o.balance,
      instances: [...this.instances.values()].map((i) => ({ ...i.info, ...(i.retiring ? { retiring: i.retiring } : {}) })),
      retired: this.retired,
    });
  }

  /** SIGINT or SIGTERM: every instance ended, then the pool let go. */
  async end(sig: string): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    clearInterval(this.timer);
    while (this.making) await sleep(20); // each ends as soon as made
    this.log(`${sig}: ending ${this.instances.size} instance(s)`);
    for (const i of this.instances.values()) i.retiring ??= `the serving command ended (${sig})`;
    await Promise.all([...this.instances.keys()].map((aid) => this.stop(aid)));
    await Promise.all(this.ends);
    this.scaler?.close();
    this.done();
  }
}

/** `appshot template serve`: runs until SIGINT or SIGTERM; the exit status. */
export async function serve(t: TableDb, name: string, o: ServeOptions): Promise<number> {
  const tpl = templateOf(t, name, o.publish.virtual, o.cold);
  const lock = lockServe(t.home, name);
  // A serving command before this one that was killed: its instances are adopted.
  const prev = readServeState(t.home, name);
  const orphans = prev ? orphansOf(t, prev) : [];
  const s = new Serving(t, tpl, o);
  const onSignal = (sig: NodeJS.Signals) => void s.end(sig);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await s.start({ aids: orphans, from: prev?.pid });
  } catch (err) {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // The state of a killed command stays for the next one (or gc).
    if (!prev) unlockServe(t.home, name, lock);
    else closeSync(lock);
    throw err;
  }
  // Until the end: what it waits for then (a clone's cleanup, through a
  // pidfd poll on a worker thread) need not hold the event loop open.
  const alive = setInterval(() => {}, 60_000);
  await s.finished;
  clearInterval(alive);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  unlockServe(t.home, name, lock);
  return 0;
}
