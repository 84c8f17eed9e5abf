import { createStream, type RotatingFileStream } from 'rotating-file-stream';
import { pino } from 'pino';
import { prettyFactory } from 'pino-pretty';
import { supervisorMetrics } from '../metrics.js';
import { DroppedLines } from './dropped-lines.js';

type SonicBoom = ReturnType<typeof pino.destination>;

/** Options of the primary's log sink. */
export interface LogSinkOptions {
  /** Rotated log file; stdout when absent. */
  file?: string | undefined;
  /** Rotate the file when it reaches this many bytes. */
  maxSizeBytes: number;
  /** Files kept, the current one included (PATH, PATH.1, ... PATH.<maxFiles-1>). */
  maxFiles: number;
  /**
   * Bytes that may wait for the disk or stdout; beyond this, lines are dropped and counted so that
   * a stuck or full disk never grows memory without bound. @default 16 MiB
   */
  maxBufferedBytes?: number;
  /**
   * Lines for a person on stdout (pino-pretty: time, level, message, the other fields on the same
   * line) instead of JSON; never applied to the file. @default false
   */
  pretty?: boolean;
}

const RETRY_MS = 1000;
/** Longest wait for a log file stream to finish when it is replaced or closed. */
const END_TIMEOUT_MS = 2000;

/**
 * The one writer of the log: the primary writes its own lines and every worker's lines here, so
 * lines are never torn or interleaved and exactly one process rotates the file. Writes are
 * asynchronous; when the destination fails (disk full) or falls too far behind, lines are dropped
 * and counted, and writing resumes on its own.
 */
export class LogSink {
  readonly #options: LogSinkOptions;
  readonly #maxBufferedBytes: number;
  /** Largest piece handed to the file stream: it rotates between pieces, so this bounds overshoot. */
  readonly #pieceBytes: number;
  #stdout: SonicBoom | undefined;
  /** Formats JSON lines for a person, when stdout is a terminal. */
  readonly #pretty: ((line: string) => string) | undefined;
  #file: RotatingFileStream | undefined;
  #broken: string | undefined;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;
  /** Lines that could not be written. */
  readonly dropped = new DroppedLines(supervisorMetrics.logLinesDropped);
  /** Called once lines can be written again after some were dropped (to log how many). */
  onDropped: ((lines: number, reason: string) => void) | undefined;

  constructor(options: LogSinkOptions) {
    this.#options = options;
    this.#maxBufferedBytes = options.maxBufferedBytes ?? 16 * 1024 * 1024;
    this.#pieceBytes = Math.min(64 * 1024, Math.max(256, Math.floor(options.maxSizeBytes / 8)));
    if (options.file === undefined) {
      this.#stdout = pino.destination({ dest: 1, sync: false, maxLength: this.#maxBufferedBytes });
      this.#stdout.on('drop', (data: string) => this.dropped.add(data, 'stdout is not keeping up'));
      this.#stdout.on('error', (error: Error) => this.dropped.add(0, `stdout: ${error.message}`));
      if (options.pretty === true) {
        this.#pretty = prettyFactory({
          colorize: true,
          translateTime: 'SYS:HH:MM:ss',
          ignore: 'pid,hostname',
          singleLine: true,
        });
      }
    } else {
      this.#openFile();
    }
  }

  /** Resolves once the destination is open; rejects when the log file cannot be opened at all. */
  ready(): Promise<void> {
    const file = this.#file;
    if (file === undefined) {
      return this.#broken === undefined ? Promise.resolve() : Promise.reject(new Error(this.#broken));
    }
    return new Promise((resolve, reject) => {
      file.once('open', () => resolve());
      file.once('error', (error: Error) =>
        reject(new Error(`cannot write the log file ${this.#options.file}: ${error.message}`)),
      );
    });
  }

  /** Writes one or more complete lines (each ending in a newline). Never blocks, never throws. */
  write(text: string): void {
    if (this.#closed) {
      this.dropped.add(text, 'the log is closed');
      return;
    }
    if (this.#stdout) {
      this.#reportDrops();
      this.#stdout.write(this.#pretty === undefined ? text : prettyLines(text, this.#pretty));
      return;
    }
    const file = this.#file;
    if (file === undefined || this.#broken !== undefined) {
      this.dropped.add(text, this.#broken ?? 'the log file is closed');
      return;
    }
    if (file.writableLength > this.#maxBufferedBytes) {
      this.dropped.add(text, 'the log file is not keeping up');
      return;
    }
    this.#reportDrops();
    for (const piece of this.#pieces(text)) {
      file.write(piece, (error) => {
        if (error) this.dropped.add(piece, error.message);
      });
    }
  }

  /** Reopens the log file (SIGHUP), e.g. after an external tool moved it. */
  reopen(): Promise<void> {
    if (this.#stdout || this.#closed) return Promise.resolve();
    const previous = this.#file;
    this.#openFile();
    return previous ? this.#end(previous) : Promise.resolve();
  }

  /** Writes out everything buffered and closes the destination. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    if (this.#stdout) {
      const stdout = this.#stdout;
      // What is buffered is written within a bound, once: stdout may be a file on a full disk.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, END_TIMEOUT_MS);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        stdout.once('close', done);
        stdout.once('error', done);
        try {
          stdout.end();
        } catch {
          done();
        }
      });
      // Then it is given up: pino's handler at exit would otherwise retry a refused write every
      // 100 ms for ever (sonic-boom's flushSync retries any error), and the process never exits.
      stdout.destroy();
      return;
    }
    if (this.#file) await this.#end(this.#file);
  }

  /** Splits text at line ends into pieces of at most #pieceBytes (a longer line stays whole). */
  *#pieces(text: string): Generator<string> {
    if (text.length <= this.#pieceBytes) {
      yield text;
      return;
    }
    let start = 0;
    while (start < text.length) {
      let end = text.lastIndexOf('\n', start + this.#pieceBytes - 1);
      if (end < start) end = text.indexOf('\n', start);
      if (end === -1) end = text.length - 1;
      yield text.slice(start, end + 1);
      start = end + 1;
    }
  }

  #openFile(): void {
    const { file, maxSizeBytes, maxFiles } = this.#options;
    if (file === undefined) return;
    const stream = createStream(file, { size: `${maxSizeBytes}B`, rotate: maxFiles - 1 });
    this.#file = stream;
    this.#broken = undefined;
    stream.on('error', (error: Error) => {
      if (this.#file !== stream) return;
      this.#broken = error.message;
      this.#file = undefined;
      // Try again later: the disk may have room by then. Lines meanwhile are dropped and counted.
      if (!this.#closed) this.#retry = setTimeout(() => this.#openFile(), RETRY_MS);
    });
    stream.on('warning', () => {});
  }

  #end(stream: RotatingFileStream): Promise<void> {
    return new Promise((resolve) => {
      if (stream.destroyed || stream.writableFinished) {
        resolve();
        return;
      }
      // Bounded: a stream that never reports closing must not hold up a reopen or a shutdown.
      const timer = setTimeout(resolve, END_TIMEOUT_MS);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      stream.once('finish', done);
      stream.once('close', done);
      stream.once('error', done);
      stream.end();
    });
  }

  #reportDrops(): void {
    if (this.onDropped !== undefined) this.dropped.report(this.onDropped);
  }
}

/** Each JSON line of `text` as `pretty` shows it (pino-pretty keeps a line that is not JSON). */
function prettyLines(text: string, pretty: (line: string) => string): string {
  let shown = '';
  for (const line of text.split('\n')) {
    if (line !== '') shown += pretty(line);
  }
  return shown;
}
