/** Number of complete lines (newlines) in `text`. */
export function countLines(text: string): number {
  let lines = 0;
  for (let index = text.indexOf('\n'); index !== -1; index = text.indexOf('\n', index + 1)) lines++;
  return lines;
}

/**
 * The log lines a destination could not write (the log sink, a worker's IPC channel): a running
 * total for the exit message, and the count since the last report, so that one warning covers
 * each run of drops. Only the destination adds; readers see the counts.
 */
export class DroppedLines {
  readonly #counter: { inc(lines: number): void } | undefined;
  #total = 0;
  #unreported = 0;
  #reason = '';

  /** @param counter also counts every drop (digestd_log_lines_dropped_total) */
  constructor(counter?: { inc(lines: number): void }) {
    this.#counter = counter;
  }

  /** Lines dropped since start. */
  get total(): number {
    return this.#total;
  }

  /** Why lines were last dropped. */
  get reason(): string {
    return this.#reason;
  }

  /** Counts the lines of `text` (or `lines` lines) as dropped, for `reason`. */
  add(text: string | number, reason: string): void {
    const lines = typeof text === 'number' ? text : countLines(text);
    this.#total += lines;
    this.#unreported += lines;
    if (lines > 0) this.#counter?.inc(lines);
    this.#reason = reason;
  }

  /** Hands the lines dropped since the last report, if any, to `report`. */
  report(report: (lines: number, reason: string) => void): void {
    if (this.#unreported === 0) return;
    const lines = this.#unreported;
    this.#unreported = 0;
    report(lines, this.#reason);
  }
}
