/**
 * stdout and stderr may be files on a full disk (`digestd serve >>digestd.out 2>&1`), where Node
 * writes synchronously and a failed write throws, or pipes whose reader is gone, where it emits
 * 'error'. Neither may end the process: what could not be written is lost, the service is not.
 */
export function tolerateStdioFailures(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
}

/** Writes to stderr; never throws. */
export function writeStderr(text: string): void {
  try {
    process.stderr.write(text);
  } catch {
    // Nowhere left to say it.
  }
}
