import cliProgress from 'cli-progress';

/** Bytes copied while capturing or restoring shared memory, shown as a bar. */
export interface Progress {
  start(totalBytes: number): void;
  advance(bytes: number): void;
  stop(): void;
}

/** Worth a bar: below this a copy ends before a person could read one. */
const MIN_BYTES = 64 * 1024 * 1024;

/** A bar on stderr when stderr is a terminal, else nothing. */
export function terminalProgress(label: string): Progress | undefined {
  if (!process.stderr.isTTY) return undefined;
  let bar: cliProgress.SingleBar | undefined;
  let done = 0;
  return {
    start(total) {
      if (total < MIN_BYTES) return;
      bar = new cliProgress.SingleBar(
        { stream: process.stderr, format: `${label} [{bar}] {percentage}% {value}/{total} MiB`, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.ceil(total / 2 ** 20), 0);
    },
    advance: (bytes) => {
      done += bytes;
      bar?.update(Math.floor(done / 2 ** 20));
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
