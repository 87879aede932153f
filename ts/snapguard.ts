/**
 * The guard of one snapshot in progress (ts/stops.ts), its second half:
 * started by appshot-stopguard (native/snapshot/stopguard.c) once the
 * snapshotter has ended with its stop record still there, with the read
 * end of the snapshotter's pipe as stdin (at its end already) and the
 * record as its argument. End of file on stdin means the snapshotter has
 * ended, however it ended; if its record is still there, it died holding
 * the application stopped: resume it.
 */
import { resumeAbandoned } from './stops.js';

const record = process.argv[2];
process.stdin.on('data', () => {}); // nothing is written: only the end matters
process.stdin.on('error', () => {}); // a read error also means the end
process.stdin.on('close', () => {
  const note = record ? resumeAbandoned(record) : null;
  if (note) process.stderr.write(`appshot: ${note}\n`);
  process.exit(0);
});
