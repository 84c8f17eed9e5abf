import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** pino's levels, from the least to the most verbose, and `silent`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Options of the process logger. */
export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go. @default stdout, written asynchronously in batches so logging never blocks a request. */
  destination?: DestinationStream;
}

const LOG_BATCH_BYTES = 4096;

let secondStartMs = -1;
let secondPrefix = '';
/**
 * pino's isoTime, with the date and time up to the second formatted once per second and the
 * milliseconds added arithmetically: a busy server logs many lines a second, and formatting the
 * date showed in CPU profiles of the access log.
 */
export function isoTimeField(): string {
  const now = Date.now();
  let ms = now - secondStartMs;
  if (ms < 0 || ms >= 1000) {
    ms = now % 1000;
    secondStartMs = now - ms;
    // "YYYY-MM-DDTHH:MM:SS." of toISOString; the milliseconds follow.
    secondPrefix = `,"time":"${new Date(secondStartMs).toISOString().slice(0, 20)}`;
  }
  return `${secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
}
const LOG_FLUSH_MS = 100;

/** Creates the structured JSON logger (one JSON object a line). */
export function createLogger(options: LoggerOptions): Logger {
  // Lines are gathered into writes of at least LOG_BATCH_BYTES, and anything pending goes out every
  // LOG_FLUSH_MS: one write(2) per request cost more CPU than writing the line itself. At exit
  // (and on shutdown, which flushes) nothing is lost; a SIGKILL may lose the last LOG_FLUSH_MS.
  const destination =
    options.destination ??
    pino.destination({ dest: 1, sync: false, minLength: LOG_BATCH_BYTES, periodicFlush: LOG_FLUSH_MS });
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      timestamp: isoTimeField,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
