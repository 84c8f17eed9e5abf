/** node's timers hold at most 2^31 - 1 ms (about 24.8 days); longer waits are chained. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** A timer that may wait longer than node's timers allow. */
export interface LongTimer {
  cancel(): void;
}

/**
 * Calls `callback` at `at` (at once when that has passed), waiting in steps node's timers can
 * hold. The timer never keeps the process alive.
 */
export function runAt(at: Date, callback: () => void): LongTimer {
  let timer: NodeJS.Timeout | undefined;
  const step = () => {
    const remaining = at.getTime() - Date.now();
    if (remaining <= 0) {
      timer = undefined;
      callback();
      return;
    }
    timer = setTimeout(step, Math.min(remaining, LONGEST_TIMER_MS));
    timer.unref();
  };
  step();
  return { cancel: () => clearTimeout(timer) };
}
