import { constants as bufferConstants } from 'node:buffer';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { addon } from './addon.js';
import { AppshotError, EXIT, notAFile, pathCause, unreadable } from './errors.js';
import { fdToShm, shmToFd } from './sysv/kernel.js';

/**
 * The snapshot file: a header, then sections, each checksummed on its own,
 * ending with an END section, so a truncated file, a flipped byte or a
 * foreign file is refused before anything is believed.
 *
 *   header   magic "APPSNAP\n" (8), format version u32, crc32c of those 12 bytes u32
 *   section  kind u32, 0 u32, payload length u64, payload crc32c u32,
 *            crc32c of the previous 20 bytes u32, then the payload
 *
 * Integers are big-endian. Shared memory sections are streamed between the
 * segment and the file (never whole in memory): their payload is a u32
 * length, a JSON header of that length, then the segment's bytes. A whole
 * image (issue 18) adds, after the IPC sections, sections that
 * appshot-checkpoint writes: FILES (JSON: every open file description),
 * then SHARED (shared memory between processes) and PROC (one process)
 * sections framed like shm ones, their bytes starting at a page boundary of
 * the file so a restore can map them.
 */

export const SNAP_MAGIC = Buffer.from('APPSNAP\n');
export const SNAP_VERSION = 1;
const HEADER_LEN = 16;
const SECTION_HEADER_LEN = 24;

export const SECTION = { meta: 1, rows: 2, sem: 3, shm: 4, msg: 5, files: 6, shared: 7, proc: 8, end: 0xffff } as const;
export type SectionKind = keyof typeof SECTION;
const SECTION_NAME: Record<number, SectionKind> = Object.fromEntries(Object.entries(SECTION).map(([k, v]) => [v, k as SectionKind]));
/** Sections whose payload is a u32 length, a JSON header, then bytes (as
 * long as the memory they hold, so not bounded by JSON_MAX). */
const HEADED: ReadonlySet<SectionKind> = new Set(['shm', 'shared', 'proc']);
/** Sections appshot-checkpoint writes into a whole image. */
export const PROCESS_SECTIONS: ReadonlySet<SectionKind> = new Set(['files', 'shared', 'proc']);

/** The longest JSON this appshot can parse (V8's longest string), so the
 * longest JSON section or shm header it writes or reads. A length read from
 * the file is checked against it as well as against the file's size: a
 * sparse file can be as long as its damaged lengths say. */
const JSON_MAX = bufferConstants.MAX_STRING_LENGTH;

const crc = (b: Buffer, from = 0) => addon().crc32c(b, from) >>> 0;

function damaged(file: string, what: string): AppshotError {
  return new AppshotError(`${file} is not a usable snapshot: ${what}; nothing was restored`, EXIT.inconsistent);
}

/** Writes a snapshot to a temporary file beside the target, renamed into
 * place only once it is whole and on disk. */
export class SnapWriter {
  readonly tmp: string;
  private fd: number;
  private sections = 0;
  /** The file offset: every write is sequential, the shm streaming too. */
  private pos = 0;

  /** Where this process writes a snapshot of target until it is whole. */
  static tempPath(target: string): string {
    return resolve(dirname(target), `.${basename(target)}.tmp-${process.pid}`);
  }

  constructor(readonly target: string) {
    this.tmp = SnapWriter.tempPath(target);
    SnapWriter.checkTarget(target);
    try {
      this.fd = openSync(this.tmp, 'wx', 0o600);
    } catch (err) {
      throw cannotWrite(target, err, `give -o a file in a directory you can write (the snapshot is written to ${this.tmp} first, and that could not be made)`);
    }
    const h = Buffer.alloc(HEADER_LEN);
    SNAP_MAGIC.copy(h);
    h.writeUInt32BE(SNAP_VERSION, 8);
    h.writeUInt32BE(crc(h.subarray(0, 12)), 12);
    this.write(h);
  }

  /** Refuses a target that is a directory or is in no directory before
   * anything is stopped or written. An existing file is replaced. */
  static checkTarget(target: string): void {
    let st;
    try {
      st = statSync(target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw cannotWrite(target, err);
      try {
        if (!statSync(dirname(resolve(target))).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new AppshotError(
          `cannot write the snapshot to ${target}: its directory ${dirname(resolve(target))} ${e.code === 'ENOENT' ? 'does not exist; make it first, or' : `cannot be used (${pathCause(e)});`} give -o a file in a directory you can write`,
          EXIT.failure,
        );
      }
      return;
    }
    if (st.isDirectory()) throw cannotWrite(target, notAFile(true), `give -o a file name, ${resolve(target, 'NAME.snap')} say`);
    if (!st.isFile()) throw cannotWrite(target, notAFile(false), 'give -o a regular file, or a new name');
  }

  private write(b: Buffer): void {
    this.writing(() => writeSync(this.fd, b));
    this.pos += b.length;
  }

  /** A write to the file: a full disk or an I/O error is the target's to
   * name, not a stack trace (the caller removes the temporary file). */
  private writing<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (typeof (err as NodeJS.ErrnoException)?.code === 'string' && /^E[A-Z]+$/.test((err as NodeJS.ErrnoException).code!))
        throw cannotWrite(this.target, err, 'free some space there, or give -o a file on another filesystem; no snapshot was written');
      throw err;
    }
  }

  private sectionHeader(kind: number, length: number, payloadCrc: number): Buffer {
    const h = Buffer.alloc(SECTION_HEADER_LEN);
    h.writeUInt32BE(kind, 0);
    h.writeBigUInt64BE(BigInt(length), 8);
    h.writeUInt32BE(payloadCrc >>> 0, 16);
    h.writeUInt32BE(crc(h.subarray(0, 20)), 20);
    return h;
  }

  /** A section whose payload is a JSON value. */
  json(kind: SectionKind, value: unknown): void {
    const payload = Buffer.from(JSON.stringify(value));
    this.write(this.sectionHeader(SECTION[kind], payload.length, crc(payload)));
    this.write(payload);
    this.sections++;
  }

  /** A shared memory section: header, then the segment's bytes streamed
   * from the kernel object in chunks (progress gets the bytes done). */
  shm(header: object, shmid: number, size: number, progress?: (bytes: number) => void): void {
    const json = Buffer.from(JSON.stringify(header));
    const lead = Buffer.alloc(4);
    lead.writeUInt32BE(json.length);
    const headerAt = this.pos;
    this.write(Buffer.alloc(SECTION_HEADER_LEN)); // filled in once the crc is known
    this.write(lead);
    this.write(json);
    let sum = crc(json, crc(lead));
    for (let off = 0; off < size; off += CHUNK) {
      const len = Math.min(CHUNK, size - off);
      sum = this.writing(() => shmToFd(this.fd, shmid, off, len, sum));
      this.pos += len;
      progress?.(len);
    }
    this.writing(() => writeSync(this.fd, this.sectionHeader(SECTION.shm, 4 + json.length + size, sum), 0, SECTION_HEADER_LEN, headerAt));
    this.sections++;
  }

  /** The descriptor and offset where another writer (appshot-checkpoint,
   * given the descriptor) writes the next sections. */
  get descriptor(): number {
    return this.fd;
  }
  get offset(): number {
    return this.pos;
  }

  /**
   * Takes as its own the sections another writer put between this
   * writer's offset and end: each one's header is read back and checked
   * (its checksum, a kind a whole image holds, its payload ending inside
   * [offset, end)), and it counts for the END section; the file offset
   * moves to end. Payloads are checked by whoever reads the file.
   */
  adopt(end: number, kinds: ReadonlySet<SectionKind>): number {
    const rd = openSync(this.tmp, 'r');
    let n = 0;
    try {
      const h = Buffer.alloc(SECTION_HEADER_LEN);
      for (let at = this.pos; at < end; n++) {
        const what = `the section appshot-checkpoint wrote at byte ${at}`;
        if (at + SECTION_HEADER_LEN > end || readSync(rd, h, 0, SECTION_HEADER_LEN, at) !== SECTION_HEADER_LEN) throw new AppshotError(`${what} is cut short; no snapshot was written`, EXIT.failure);
        const kind = SECTION_NAME[h.readUInt32BE(0)];
        if (crc(h.subarray(0, 20)) !== h.readUInt32BE(20) || !kind || !kinds.has(kind)) throw new AppshotError(`${what} has a bad header; no snapshot was written`, EXIT.failure);
        at += SECTION_HEADER_LEN + Number(h.readBigUInt64BE(8));
        if (at > end) throw new AppshotError(`${what} runs past byte ${end}, where it said it stopped; no snapshot was written`, EXIT.failure);
      }
    } finally {
      closeSync(rd);
    }
    this.pos = end;
    addon().seek(this.fd, end);
    this.sections += n;
    return n;
  }

  /** The END section, fsync, and the rename that makes the file appear. */
  finish(): void {
    this.json('end', { sections: this.sections });
    this.writing(() => fsyncSync(this.fd));
    closeSync(this.fd);
    this.fd = -1;
    try {
      renameSync(this.tmp, this.target);
    } catch (err) {
      throw cannotWrite(this.target, err);
    }
    const dir = openSync(dirname(this.target), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  /** Leaves nothing behind: the temporary file goes. */
  abort(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.tmp);
    } catch {
      /* never made */
    }
  }
}

const CHUNK = 256 * 1024 * 1024;

function cannotWrite(target: string, err: unknown, fix = 'give -o a file in a directory you can write'): AppshotError {
  return new AppshotError(`cannot write the snapshot to ${target}: ${pathCause(err)}; ${fix}`, EXIT.failure);
}

/** The fix for a snapshot path that names nothing readable. */
const SNAPSHOT_FIX = "give the path of a snapshot file that 'appshot snapshot AID -o FILE' wrote";

export interface Section {
  kind: SectionKind;
  index: number;
  /** Where its payload begins in the file. */
  offset: number;
  length: number;
  crc: number;
}

/** Reads a snapshot section by section, checking each checksum. */
export class SnapReader {
  private fd: number;
  private pos = 0;
  private index = 0;
  readonly size: number;

  constructor(readonly file: string) {
    try {
      this.fd = openSync(file, 'r');
    } catch (err) {
      throw unreadable('snapshot', file, err, SNAPSHOT_FIX);
    }
    const st = fstatSync(this.fd);
    if (!st.isFile()) {
      closeSync(this.fd);
      throw unreadable('snapshot', file, notAFile(st.isDirectory()), SNAPSHOT_FIX);
    }
    this.size = st.size;
    const h = this.read(HEADER_LEN, 'the file header');
    if (!h.subarray(0, 8).equals(SNAP_MAGIC)) throw damaged(file, 'it does not begin with an appshot snapshot header (APPSNAP)');
    if (crc(h.subarray(0, 12)) !== h.readUInt32BE(12)) throw damaged(file, 'its file header fails its checksum (the file is damaged)');
    const version = h.readUInt32BE(8);
    if (version > SNAP_VERSION)
      throw new AppshotError(`${file} is a snapshot of format version ${version}, newer than this appshot reads (${SNAP_VERSION}); restore it with a newer appshot`, EXIT.inconsistent);
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Refuses a file that cannot be read as a snapshot at all (missing, a
   * directory, not readable, not one), before anything else is made. */
  static check(file: string): void {
    new SnapReader(file).close();
  }

  /** n bytes at the reader's position: into the start of buffer into when
   * given (reused by a caller reading much), else a new buffer. */
  private read(n: number, what: string, into?: Buffer): Buffer {
    if (this.pos + n > this.size) throw damaged(this.file, `it is truncated: ${what} at byte ${this.pos} needs ${n} bytes, the file ends at ${this.size}`);
    if (n > JSON_MAX) throw damaged(this.file, `${what} at byte ${this.pos} declares ${n} bytes, more than appshot ever writes there (${JSON_MAX})`);
    // Sequential reads: the shm streaming reads from the same file offset.
    const b = into ? into.subarray(0, n) : Buffer.allocUnsafe(n); // filled whole below
    let got = 0;
    while (got < n) got += readSync(this.fd, b, got, n - got, null);
    this.pos += n;
    return b;
  }

  /** The next section's header, checked; null after END. */
  next(): Section | null {
    const at = this.pos;
    const h = this.read(SECTION_HEADER_LEN, `the header of section ${this.index + 1}`);
    if (crc(h.subarray(0, 20)) !== h.readUInt32BE(20)) throw damaged(this.file, `the header of section ${this.index + 1} at byte ${at} fails its checksum (the file is damaged)`);
    const kind = SECTION_NAME[h.readUInt32BE(0)];
    const length = Number(h.readBigUInt64BE(8));
    if (!kind) throw damaged(this.file, `section ${this.index + 1} at byte ${at} is of unknown kind ${h.readUInt32BE(0)}`);
    if (!HEADED.has(kind) && length > JSON_MAX)
      throw damaged(this.file, `section ${this.index + 1} (${kind}) at byte ${at} declares ${length} bytes, more than appshot ever writes in one (${JSON_MAX})`);
    if (this.pos + length > this.size)
      throw damaged(this.file, `it is truncated: section ${this.index + 1} (${kind}) at byte ${at} needs ${length} bytes, the file ends at ${this.size}`);
    const s = { kind, index: ++this.index, offset: this.pos, length, crc: h.readUInt32BE(16) };
    return kind === 'end' ? (this.skipEnd(s), null) : s;
  }

  private skipEnd(s: Section): void {
    this.json(s);
    if (this.pos !== this.size) throw damaged(this.file, `${this.size - this.pos} bytes follow its END section`);
  }

  /** A JSON section's value, checked. */
  json<T>(s: Section): T {
    const payload = this.read(s.length, `section ${s.index} (${s.kind})`);
    if (crc(payload) !== s.crc) throw this.badChecksum(s);
    try {
      return JSON.parse(payload.toString()) as T;
    } catch {
      throw damaged(this.file, `section ${s.index} (${s.kind}) at byte ${s.offset} is not JSON though its checksum holds (the file was altered)`);
    }
  }

  badChecksum(s: Section, what: string = s.kind): AppshotError {
    return damaged(this.file, `section ${s.index} (${what}) at byte ${s.offset} fails its checksum (the file is damaged)`);
  }

  /** The JSON header of a section framed like shm ones (shm, shared,
   * proc); then shmInto, skipBytes or skip for its bytes. */
  headerOf<T>(s: Section): { header: T; bytes: number; sum: number } {
    const lead = this.read(4, `section ${s.index} (${s.kind})`);
    const len = lead.readUInt32BE(0);
    if (4 + len > s.length || len > JSON_MAX) throw this.badChecksum(s);
    const json = this.read(len, `section ${s.index} (${s.kind})`);
    let header: T;
    try {
      header = JSON.parse(json.toString()) as T;
    } catch {
      throw this.badChecksum(s);
    }
    return { header, bytes: s.length - 4 - len, sum: crc(json, crc(lead)) };
  }

  /** Streams a segment's bytes from the file into kernel segment shmid. */
  shmInto(s: Section, shmid: number, bytes: number, sum: number, progress?: (n: number) => void): void {
    for (let off = 0; off < bytes; off += CHUNK) {
      const len = Math.min(CHUNK, bytes - off);
      sum = fdToShm(this.fd, shmid, off, len, sum);
      this.pos += len;
      progress?.(len);
    }
    if (sum >>> 0 !== s.crc) throw this.badChecksum(s, 'shared memory contents');
  }

  /** Moves past a section's payload without reading it: for a template's
   * shared segment, whose bytes were checked when the template was made. */
  skip(s: Section): void {
    this.pos = s.offset + s.length;
    addon().seek(this.fd, this.pos);
  }

  /** Reads past the bytes after a section's header, checking them (in
   * chunks: a process's memory is never whole in this one's). */
  skipBytes(s: Section, bytes: number, sum: number, progress?: (n: number) => void): void {
    const buf = Buffer.allocUnsafe(Math.min(SKIP_CHUNK, Math.max(bytes, 1)));
    for (let off = 0; off < bytes; off += buf.length) {
      const len = Math.min(buf.length, bytes - off);
      // One buffer for the whole section: a new one per chunk costs a
      // page fault per 4 KB, more than the read and the checksum.
      const chunk = this.read(len, `section ${s.index} (${s.kind})`, buf);
      sum = crc(chunk, sum);
      progress?.(len);
    }
    if (sum >>> 0 !== s.crc) throw this.badChecksum(s, s.kind === 'shm' ? 'shared memory contents' : `${s.kind} contents`);
  }
}

const SKIP_CHUNK = 8 * 1024 * 1024;
