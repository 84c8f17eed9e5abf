import type { Logger } from '../log/logger.js';

/** Options of onShutdownSignal. */
export interface ShutdownOptions {
  /** Stops the process's work: stop accepting, finish in-flight requests, close the store. */
  stop: () => Promise<void>;
  /** Writes out buffered log lines; called before every exit. @default logger.flush */
  flush?: () => Promise<void>;
  /** Runs before an immediate exit on a second signal (e.g. kill the workers). */
  abort?: () => void;
  /**
   * What a signal does once the shutdown has begun: `exit` at once with status 1 (an operator
   * insisting), or `ignore` it (a worker, which gets a copy of every signal sent to its process
   * group; the primary gets one too and decides). @default 'exit'
   */
  repeatedSignal?: 'exit' | 'ignore';
}

/** Starts a graceful shutdown as if a signal had arrived; a second call does nothing. */
export type ShutdownTrigger = (reason: string) => void;

/**
 * On SIGTERM or SIGINT: run `stop`, flush the logs and exit 0. A second signal exits at once with
 * status 1 (or is ignored, per `repeatedSignal`). Returns a trigger for other reasons to shut
 * down (e.g. a message from the primary); a signal after it counts as a second one.
 */
export function onShutdownSignal(logger: Logger, options: ShutdownOptions): ShutdownTrigger {
  const flush = options.flush ?? (() => new Promise<void>((resolve) => logger.flush(() => resolve())));
  let stopping = false;
  const begin = (reason: string) => {
    stopping = true;
    logger.info({ reason }, 'shutting down');
    options.stop().then(
      () => {
        logger.info('stopped');
        exitAfter(flush, 0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        exitAfter(flush, 1);
      },
    );
  };
  const handle = (signal: NodeJS.Signals) => {
    if (stopping && options.repeatedSignal === 'ignore') {
      logger.info({ signal }, 'already shutting down: the signal changes nothing');
      return;
    }
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting at once');
      options.abort?.();
      exitAfter(flush, 1);
      return;
    }
    begin(signal);
  };
  process.on('SIGTERM', handle);
  process.on('SIGINT', handle);
  return (reason) => {
    if (!stopping) begin(reason);
  };
}

/** Writes out buffered log lines (waiting at most 2 s for them), then exits. */
export function exitAfter(flush: () => Promise<void>, code: number): void {
  const timer = setTimeout(() => process.exit(code), 2000);
  void flush()
    .catch(() => {})
    .finally(() => {
      clearTimeout(timer);
      process.exit(code);
    });
}
