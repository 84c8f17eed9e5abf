import { metrics } from '../metrics.js';
import { DroppedLines } from './dropped-lines.js';

/** The IPC message carrying a worker's log lines to the primary, the one writer of the log. */
export interface LogLinesMessage {
  type: 'log';
  /** One or more complete JSON lines, each ending in a newline. */
  lines: string;
}

/** Options of IpcLogDestination. */
export interface IpcLogDestinationOptions {
  /** Sends a message to the primary; `process.send` in a worker. */
  send: (message: LogLinesMessage, callback: (error: Error | null) => void) => void;
  /** Lines are sent together once this many bytes wait. @default 64 KiB */
  batchBytes?: number;
  /**
   * Longest a line waits for its batch (0: the next turn of the timers). One IPC message per batch
   * instead of per line is what keeps logging cheap with several workers. Lines still go out on
   * flush (shutdown, crash), so batching loses nothing a clean exit would keep. @default 20
   */
  batchMs?: number;
  /**
   * Bytes sent but not yet taken by the IPC channel; beyond this (the primary is not reading),
   * lines are dropped and counted instead of growing memory. @default 8 MiB
   */
  maxInFlightBytes?: number;
}

/**
 * A pino destination in a worker: lines are batched (one IPC message per batchMs, or per 64 KiB) and sent to the primary, so workers never touch the log file. Writing never blocks.
 */
export class IpcLogDestination {
  readonly #send: IpcLogDestinationOptions['send'];
  readonly #batchBytes: number;
  readonly #batchMs: number;
  readonly #maxInFlightBytes: number;
  #batch = '';
  /** The pending send of the current batch; set while lines wait. */
  #timer: NodeJS.Timeout | undefined;
  #inFlightBytes = 0;
  #waiters: (() => void)[] = [];
  /** Lines dropped because the primary was not reading or the channel was closed. */
  readonly dropped = new DroppedLines(metrics.logLinesDropped);

  constructor(options: IpcLogDestinationOptions) {
    this.#send = options.send;
    this.#batchBytes = options.batchBytes ?? 64 * 1024;
    this.#batchMs = options.batchMs ?? 20;
    this.#maxInFlightBytes = options.maxInFlightBytes ?? 8 * 1024 * 1024;
  }

  /** Called by pino with one complete line. */
  write(line: string): void {
    this.#batch += line;
    if (this.#batch.length >= this.#batchBytes) this.#sendBatch();
    else this.#timer ??= setTimeout(() => this.#sendBatch(), this.#batchMs).unref();
  }

  /** Sends what is batched and calls back once the channel has taken everything (pino's flush). */
  flush(callback: (error?: Error) => void = () => {}): void {
    this.#sendBatch();
    if (this.#inFlightBytes === 0) callback();
    else this.#waiters.push(() => callback());
  }

  #sendBatch(): void {
    // A batch sent early (full, or flushed) takes its timer along, so the next batch waits its own
    // batchMs.
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const lines = this.#batch;
    if (lines === '') return;
    this.#batch = '';
    if (this.#inFlightBytes > this.#maxInFlightBytes) {
      this.dropped.add(lines, 'the primary is not reading');
      return;
    }
    this.#inFlightBytes += lines.length;
    try {
      this.#send({ type: 'log', lines }, (error) => {
        if (error) this.dropped.add(lines, error.message);
        this.#inFlightBytes -= lines.length;
        if (this.#inFlightBytes === 0) {
          const waiters = this.#waiters;
          this.#waiters = [];
          for (const waiter of waiters) waiter();
        }
      });
    } catch {
      this.#inFlightBytes -= lines.length;
      this.dropped.add(lines, 'the IPC channel is closed');
    }
  }
}
