import { readFile } from 'node:fs/promises';
import { loadCommandLine } from '../config/load.js';
import { namesOf } from '../config/names.js';
import { formatDigest, parseDigest, type Digest } from '../digest.js';
import { InvalidConfig } from '../errors.js';
import type { RemovalOutcome } from '../store/types.js';
import { startProgress } from './progress.js';
import { openCommandStore } from './source.js';

/** Removals under way at once: enough to hide a remote store's round trips. */
const CONCURRENCY = 16;

/** Most bad lines named before the rest are only counted. */
const PROBLEMS_SHOWN = 20;

/**
 * `digestd remove [--store <url>] [--from <file>] [<digest>...]`: takes messages down, as
 * `DELETE /messages/<digest>` does, from the digests given as arguments and the lines of a file
 * (a shared list of hashes: one digest a line, blank lines and # comments skipped). Every digest is
 * checked before anything is removed: one that is not 64 hex digits stops the command (exit 2)
 * naming its line. Works with the servers running or stopped: the store tells running nodes, whose
 * caches drop the message. Prints each digest with its outcome, then a line of counts. Idempotent.
 */
export async function remove(argv: readonly string[]): Promise<void> {
  const { config, operands } = loadCommandLine(argv, undefined, 'remove');
  const problems: string[] = [];
  const digests = new Map<string, Digest>();
  const take = (text: string, where: string) => {
    const digest = parseDigest(text);
    if (digest === undefined)
      problems.push(`${where}: "${text.slice(0, 80)}" is not a digest (64 hex digits)`);
    else digests.set(formatDigest(digest), digest);
  };
  operands.forEach((operand, index) => take(operand, `argument ${index + 1}`));
  const file = config.remove.from;
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new InvalidConfig([
        `${namesOf('remove', 'from')}: cannot read ${file}: ${(error as Error).message}`,
      ]);
    }
    text.split(/\r?\n/).forEach((line, index) => {
      const trimmed = line.trim();
      if (trimmed !== '' && !trimmed.startsWith('#')) take(trimmed, `${file}, line ${index + 1}`);
    });
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, PROBLEMS_SHOWN);
    if (problems.length > shown.length) shown.push(`and ${problems.length - shown.length} more`);
    throw new InvalidConfig([...shown, 'nothing was removed']);
  }

  const store = await openCommandStore('--store', { ...config.store, cacheBytes: 0, mustExist: true });
  const counts: Record<RemovalOutcome, number> = { removed: 0, not_stored: 0, already_removed: 0 };
  const progress = startProgress({ label: 'remove', total: digests.size });
  try {
    const queue = [...digests.values()];
    const worker = async () => {
      for (let digest = queue.shift(); digest !== undefined; digest = queue.shift()) {
        const outcome = await store.remove(digest);
        counts[outcome] += 1;
        process.stdout.write(`remove: ${formatDigest(digest)} ${outcome.replace('_', ' ')}\n`);
        progress.advance();
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, queue.length) }, worker));
  } finally {
    progress.stop();
    await store.close();
  }
  process.stdout.write(
    `remove: removed ${counts.removed}, not stored ${counts.not_stored}, ` +
      `already removed ${counts.already_removed}\n`,
  );
}
