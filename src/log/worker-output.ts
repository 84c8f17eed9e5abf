import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from './logger.js';

/** Options of WorkerOutput. */
export interface WorkerOutputOptions {
  logger: Logger;
  /** Entries logged per interval; the rest are counted, and the count is logged when it ends. @default 20 */
  entriesPerInterval?: number;
  /** @default 10000 */
  intervalMs?: number;
}

/** What is kept of one entry: a stack trace is enough to find the cause. */
const MAX_ENTRY_CHARS = 4096;

/**
 * What workers write on stdout or stderr outside their logger: a native library's fprintf (LMDB's
 * "mdb_page_spill flushing error 5"), a library's console.error (lmdb-js prints a failed commit),
 * Node's own warnings. Workers' stdout and stderr are pipes read here, never the primary's own
 * stdout and stderr: a write there then neither fails on a full disk nor lands in the log as a
 * line that is not JSON. Each entry (a line, with the indented lines of a stack trace that follow
 * it) becomes one log line, at most `entriesPerInterval` per interval; a library that prints in a
 * loop costs one line per interval with the count left out.
 */
export class WorkerOutput {
  readonly #logger: Logger;
  readonly #entriesPerInterval: number;
  readonly #intervalMs: number;
  #logged = 0;
  #leftOut = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: WorkerOutputOptions) {
    this.#logger = options.logger;
    this.#entriesPerInterval = options.entriesPerInterval ?? 20;
    this.#intervalMs = options.intervalMs ?? 10_000;
  }

  /** Reads one worker's stdout or stderr until it closes. */
  read(stream: Readable, fields: { workerPid: number | undefined; stream: 'stdout' | 'stderr' }): void {
    stream.on('error', () => {});
    let entry: string | undefined;
    let scheduled = false;
    const emit = () => {
      scheduled = false;
      if (entry !== undefined) this.#log(entry, fields);
      entry = undefined;
    };
    createInterface({ input: stream, crlfDelay: Infinity })
      .on('line', (line) => {
        // A stack trace's lines, and the closing brace of an error printed with its fields.
        if (entry !== undefined && /^(\s|[}\]])/.test(line)) {
          if (entry.length < MAX_ENTRY_CHARS) entry = `${entry}\n${line}`.slice(0, MAX_ENTRY_CHARS);
          return;
        }
        emit();
        if (line.trim() === '') return;
        entry = line.slice(0, MAX_ENTRY_CHARS);
        // The lines of one write arrive together: the entry is complete once they are read.
        if (!scheduled) setImmediate(emit);
        scheduled = true;
      })
      .on('close', emit);
  }

  /** Logs the count of entries still left out. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#endInterval();
  }

  #log(text: string, fields: { workerPid: number | undefined; stream: 'stdout' | 'stderr' }): void {
    this.#timer ??= setInterval(() => this.#endInterval(), this.#intervalMs).unref();
    if (this.#logged >= this.#entriesPerInterval) {
      this.#leftOut += 1;
      return;
    }
    this.#logged += 1;
    this.#logger.warn({ ...fields, output: text }, `a worker wrote on its ${fields.stream}`);
  }

  #endInterval(): void {
    if (this.#leftOut > 0) {
      this.#logger.warn(
        { leftOut: this.#leftOut },
        `workers wrote ${this.#leftOut} more entries on stdout or stderr; left out of the log`,
      );
    } else if (this.#logged === 0) {
      // A quiet interval: no timer until the next entry.
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
    this.#logged = 0;
    this.#leftOut = 0;
  }
}
