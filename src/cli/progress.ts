import cliProgress from 'cli-progress';

/** Progress of a long walk over a store: a bar on a terminal, plain lines otherwise. */
export interface Progress {
  /** Adds to the done count. */
  advance(by?: number): void;
  /** Stops the display and prints the final state. */
  stop(): void;
}

/** Options of a progress display. */
export interface ProgressOptions {
  /** What is being done, e.g. "migrate". */
  label: string;
  /** Expected number of items, when known (for percentage and ETA). */
  total: number | undefined;
  /** Where to draw. @default process.stderr */
  stream?: NodeJS.WriteStream;
  /** Seconds between plain progress lines when not on a terminal. @default 2 */
  lineIntervalSeconds?: number;
}

/**
 * On a TTY: a cli-progress bar with count, rate and ETA. Otherwise one line every few seconds,
 * e.g. `migrate: 12000/50000 (24%) 3512/s ETA 11s`, so logs of a long run stay readable.
 */
export function startProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const total = options.total;
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format:
          total === undefined
            ? `${options.label} {value} messages | {rate}/s | {duration_formatted}`
            : `${options.label} [{bar}] {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`,
        etaBuffer: 200,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    const started = Date.now();
    let done = 0;
    bar.start(total ?? 0, 0, { rate: 0 });
    return {
      advance(by = 1) {
        done += by;
        // The estimate may be low (concurrent writes): grow the total rather than overflow.
        if (total !== undefined && done > bar.getTotal()) bar.setTotal(done);
        bar.update(done, { rate: rateOf(done, started) });
      },
      stop() {
        bar.update(done, { rate: rateOf(done, started) });
        bar.stop();
      },
    };
  }
  const started = Date.now();
  const interval = (options.lineIntervalSeconds ?? 2) * 1000;
  let done = 0;
  let lastLine = started;
  const line = () => {
    const rate = rateOf(done, started);
    let text = `${options.label}: ${done}`;
    if (total !== undefined && total > 0) {
      const percent = Math.min(100, Math.floor((done / total) * 100));
      const etaSeconds = rate > 0 ? Math.max(0, Math.ceil((total - done) / rate)) : undefined;
      text += `/${total} (${percent}%) ${rate}/s${etaSeconds === undefined ? '' : ` ETA ${etaSeconds}s`}`;
    } else {
      text += ` ${rate}/s`;
    }
    stream.write(`${text}\n`);
  };
  return {
    advance(by = 1) {
      done += by;
      const now = Date.now();
      if (now - lastLine >= interval) {
        lastLine = now;
        line();
      }
    },
    stop: line,
  };
}

function rateOf(done: number, started: number): number {
  const seconds = (Date.now() - started) / 1000;
  return seconds > 0 ? Math.round(done / seconds) : 0;
}
