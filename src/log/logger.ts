import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from '../config.js';

export type { Logger };

/** Options of the process logger. */
export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go. @default stdout, written asynchronously in batches so logging never blocks a request. */
  destination?: DestinationStream;
}

const LOG_BATCH_BYTES = 4096;
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
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
