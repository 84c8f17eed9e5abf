import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/logger.js';

/**
 * How long after the first stop signal another one is a copy of it rather than an operator
 * insisting. One Ctrl-C reaches every process of the terminal's group, and `npm start` passes
 * each SIGINT and SIGTERM it gets on to its child as well, so digestd's primary gets the same
 * stop twice, a few milliseconds apart; a person pressing Ctrl-C again takes longer than this.
 */
export const REPEATED_SIGNAL_GRACE_MS = 1000;

/** Options of onShutdownSignal. */
export interface ShutdownOptions {
  /** Stops the process's work: stop accepting, finish in-flight requests, close the store. */
  stop: () => Promise<void>;
  /** Writes out buffered log lines; called before every exit. @default logger.flush */
  flush?: () => Promise<void>;
  /** Runs before an immediate exit on an insisting signal (e.g. kill the workers). */
  abort?: () => void;
  /**
   * What a signal does once the shutdown has begun: `exit` at once with status 1 if it comes
   * REPEATED_SIGNAL_GRACE_MS or more after the first (an operator insisting; a copy of the first
   * changes nothing); or `ignore` it (a worker, which gets a copy of
   * every signal sent to its process group; the primary gets one too and decides). @default 'exit'
   */
  repeatedSignal?: 'exit' | 'ignore';
}

/** Starts a graceful shutdown as if a signal had arrived; a second call does nothing. */
export type ShutdownTrigger = (reason: string) => void;

/**
 * On SIGTERM or SIGINT: run `stop`, flush the logs and exit 0. Another signal a while after the
 * first exits at once with status 1 (or is ignored, per `repeatedSignal`); SIGQUIT always does. Returns a
 * trigger for other reasons to shut down (e.g. a message from the primary); a signal after it
 * counts as a repeated one.
 */
export function onShutdownSignal(logger: Logger, options: ShutdownOptions): ShutdownTrigger {
  const flush = options.flush ?? (() => new Promise<void>((resolve) => logger.flush(() => resolve())));
  let stopping = false;
  let stoppingSince = 0;
  const exitAtOnce = (signal: NodeJS.Signals, why: string) => {
    logger.warn({ signal }, why);
    options.abort?.();
    exitAfter(flush, 1);
  };
  const begin = (reason: string) => {
    stopping = true;
    stoppingSince = performance.now();
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
      const sinceMs = Math.round(performance.now() - stoppingSince);
      if (sinceMs < REPEATED_SIGNAL_GRACE_MS) {
        logger.info({ signal, sinceMs }, 'already shutting down: a copy of the same stop changes nothing');
        return;
      }
      exitAtOnce(signal, 'second signal: exiting at once');
      return;
    }
    begin(signal);
  };
  process.on('SIGTERM', handle);
  process.on('SIGINT', handle);
  // Ctrl-\ (SIGQUIT, to the whole group): stop at once, draining or not, without a grace. Handled
  // rather than left to Node's default, which would dump a core of every process.
  process.on('SIGQUIT', () => exitAtOnce('SIGQUIT', 'SIGQUIT: exiting at once'));
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
