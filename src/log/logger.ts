import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from '../config.js';

export type { Logger };

/** Options of the process logger. */
export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go. @default stdout, written asynchronously so logging never blocks a request. */
  destination?: DestinationStream;
}

/** Creates the structured JSON logger (one JSON object a line). */
export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: false });
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
