import { type ChildProcess, spawn } from 'node:child_process';
import { AppshotError, EXIT } from './errors.js';
import { CHECKPOINT_PATH } from './paths.js';
import type { Section, SnapReader } from './snapfile.js';

/**
 * The whole-process side of a snapshot (issue 18): the dumper child,
 * appshot-checkpoint, that freezes the application's processes with ptrace
 * and writes their sections into the image, and what those sections say.
 *
 * The dumper's protocol (stdin/stdout lines, README "How it works"):
 *   dumper: `frozen N [pids P,...]`   every thread seized, all capturable
 *   harness: `dump OFFSET [go]`        (the harness wrote meta, rows, IPC)
 *   dumper: `written NEWOFFSET [N]`    FILES, SHARED*, PROC* written at OFFSET;
 *                                      with go the processes went on once
 *                                      their state was copied out, before
 *                                      the writing (never with --stop)
 *   harness: `detach` | `kill`         continue, or end every process (--stop)
 * A refusal (something it cannot capture) is exit 3 with an `appshot:` line
 * on stderr, every process detached. End of file on its stdin makes it
 * detach and exit: a harness that dies leaves the application running.
 */

/** A process as its PROC section's JSON header describes it (the engine
 * writes more; these are the fields appshot reads). Addresses are hex strings. */
export interface ProcHeader {
  vpid: number;
  spid?: number;
  ppid: number;
  pgid?: number;
  sid?: number;
  comm: string;
  cmdline?: string[];
  exe?: string;
  cwd?: string;
  threads: { stid?: number }[];
  /** bytes: what the image stores of it, a hex string ("0x1000") as every number the engine writes that may pass 2^53. */
  mappings: { start: string; end: string; prot: string; kind: string; path?: string; bytes?: string | number }[];
  fds: { fd: number; ofd: number | string; cloexec?: boolean }[];
}

/** One open file description of the FILES section: its id and kind. */
interface OpenFile {
  id?: number | string;
  ofd?: number | string;
  kind?: string;
}

/** The file descriptions of a FILES section ({"ofds": [...], ...}) by id. */
export function filesById(files: unknown): Map<string, OpenFile> {
  const ofds = (files as { ofds?: unknown } | null)?.ofds;
  const list = Array.isArray(ofds) ? ofds : [];
  const byId = new Map<string, OpenFile>();
  for (const f of list as OpenFile[]) {
    const id = f?.id ?? f?.ofd;
    if (id !== undefined) byId.set(String(id), f);
  }
  return byId;
}

/** Checks a FILES, SHARED or PROC section whole (its checksum over every
 * byte) and moves past it; gives the JSON (FILES) or the JSON header. */
export function readProcessSection<T = unknown>(r: SnapReader, s: Section): T {
  if (s.kind === 'files') return r.json<T>(s);
  const { header, bytes, sum } = r.headerOf<T>(s);
  r.skipBytes(s, bytes, sum);
  return header;
}

/** What the dumper said when it ended without finishing. */
function dumperFailure(code: number | null, signal: NodeJS.Signals | null, stderr: string, aid: string): AppshotError {
  const said = stderr
    .split('\n')
    .filter((l) => l.startsWith('appshot: '))
    .map((l) => l.slice('appshot: '.length));
  // A refusal is the dumper's own sentence, passed on as it is.
  if (code === EXIT.conflict && said.length) return new AppshotError(said.join('\n'), EXIT.conflict);
  const why = said.length ? said.join('; ') : stderr.trim() || (signal ? `it was killed by ${signal}` : `it exited with status ${code}`);
  return new AppshotError(
    `the whole-process snapshot of application '${aid}' failed in ${CHECKPOINT_PATH}: ${why}; nothing was written and the application runs on (snapshot it with --ipc-only to capture its IPC state alone)`,
    EXIT.failure,
  );
}

/** How long the dumper may take to freeze and check the processes. */
const FREEZE_MS = 60_000;

/** The dumper of one snapshot: started by freeze, told what to do by the
 * caller step by step, ended by detach or kill (or by abort on failure). */
export class Dumper {
  private child: ChildProcess;
  private lines: string[] = [];
  private waiting: ((line: string | null) => void) | null = null;
  private stderr = '';
  private exited: Promise<void>;
  private status: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private spawnError: Error | null = null;

  private constructor(
    private readonly aid: string,
    home: string,
    imageFd: number,
    pids: number[],
  ) {
    const env = { ...process.env };
    for (const name of ['LD_PRELOAD', 'APPSHOT_AID']) delete env[name]; // the dumper is appshot's, outside every application
    this.child = spawn(CHECKPOINT_PATH, ['dump', '--home', home, '--aid', aid, '--image-fd', '3', '--pids', pids.join(',')], {
      stdio: ['pipe', 'pipe', 'pipe', imageFd],
      env,
    });
    let out = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        this.lines.push(out.slice(0, nl));
        out = out.slice(nl + 1);
      }
      this.wake();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString('utf8')));
    this.child.stdin!.on('error', () => {}); // it ended: its status says why
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.spawnError = err;
        this.status = { code: null, signal: null };
        this.wake();
        resolve();
      });
      this.child.on('close', (code, signal) => {
        this.status = { code, signal };
        this.wake();
        resolve();
      });
    });
  }

  private wake(): void {
    const w = this.waiting;
    if (!w) return;
    if (this.lines.length) {
      this.waiting = null;
      w(this.lines.shift()!);
    } else if (this.status) {
      this.waiting = null;
      w(null);
    }
  }

  /** The dumper's next line, or null once it has ended without one. */
  private next(ms?: number): Promise<string | null> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.waiting = (line) => {
        if (timer) clearTimeout(timer);
        resolve(line);
      };
      if (ms) timer = setTimeout(() => this.child.kill('SIGKILL'), ms); // the kernel then detaches what it held
      this.wake();
    });
  }

  /** Its answer to a step: the line starting with word, or the error of
   * its end. */
  private async expect(word: string, ms?: number): Promise<string> {
    const line = await this.next(ms);
    if (line !== null && line.startsWith(word + ' ')) return line.slice(word.length + 1);
    if (line !== null) {
      this.child.kill('SIGKILL');
      await this.exited;
      throw new AppshotError(`${CHECKPOINT_PATH} answered '${line}' where '${word} ...' was due; nothing was written and the application runs on`, EXIT.failure);
    }
    await this.exited;
    throw this.failure();
  }

  private failure(): AppshotError {
    if (this.spawnError) {
      const missing = (this.spawnError as NodeJS.ErrnoException).code === 'ENOENT';
      return new AppshotError(
        `cannot start ${CHECKPOINT_PATH}: ${missing ? 'it is not built' : this.spawnError.message}; run 'npm install' to build it, or snapshot with --ipc-only to capture the IPC state alone`,
        EXIT.failure,
      );
    }
    return dumperFailure(this.status!.code, this.status!.signal, this.stderr, this.aid);
  }

  /** Starts the dumper and waits until every process is frozen; gives the
   * processes it froze (those forked meanwhile too). */
  static async freeze(home: string, aid: string, imageFd: number, pids: number[]): Promise<{ dumper: Dumper; pids: number[] }> {
    const d = new Dumper(aid, home, imageFd, pids);
    const rest = await d.expect('frozen', FREEZE_MS);
    const m = /pids ([\d,]+)/.exec(rest);
    return { dumper: d, pids: m ? m[1].split(',').map(Number) : pids };
  }

  /** Has the dumper write its sections at offset; gives the offset past
   * them. goOn: the processes will be let go (not killed), so the dumper
   * lets them go as soon as it has copied their state out, before it writes
   * the file: the pause they see is shorter. */
  async dump(offset: number, goOn = false): Promise<number> {
    this.child.stdin!.write(`dump ${offset}${goOn ? ' go' : ''}\n`);
    // `written NEWOFFSET [SECTIONS]`: the sections are counted again from the file.
    const end = Number((await this.expect('written')).split(' ')[0]);
    if (!Number.isSafeInteger(end) || end < offset)
      throw new AppshotError(`${CHECKPOINT_PATH} reported writing up to byte ${end}, before where it started (${offset}); no snapshot was written`, EXIT.failure);
    return end;
  }

  /** The last step: the processes continue (detach) or end (kill). */
  async finish(how: 'detach' | 'kill'): Promise<void> {
    this.child.stdin!.end(`${how}\n`);
    await this.exited;
    if (this.status!.code !== 0) throw this.failure();
    this.relayNotes();
  }

  /** On any failure of the caller's: the dumper lets every process go. */
  async abort(): Promise<void> {
    if (!this.status) this.child.stdin!.end(); // end of file: it detaches everything
    await this.exited;
  }

  /** What it said on stderr besides a failure: warnings for the user. */
  private relayNotes(): void {
    if (this.stderr) process.stderr.write(this.stderr.endsWith('\n') ? this.stderr : this.stderr + '\n');
  }
}
