import type { Digest } from '../digest.js';
import type { MessageStore } from '../store/types.js';
import type { Progress } from './progress.js';

/** Entries read and written per round. */
const BATCH = 500;

/** What copyEntries did. */
export interface Copied {
  /** Messages written to the target. */
  copied: number;
  /** Messages the target held already. */
  present: number;
}

/**
 * Writes the entries missing from `target`, a batch at a time (one durable commit per batch where
 * the store allows): what migrate and restore share. Running it again after an interruption copies
 * only what is still missing. The entries come checked against their digests (verifiedEntries).
 */
export async function copyEntries(
  entries: AsyncIterable<readonly [Digest, string]>,
  target: MessageStore,
  progress: Progress,
): Promise<Copied> {
  const result: Copied = { copied: 0, present: 0 };
  let batch: (readonly [Digest, string])[] = [];
  const flush = async () => {
    const exists = await Promise.all(batch.map(([digest]) => target.has(digest)));
    const missing = batch.filter((_, index) => !exists[index]);
    await target.putMany(missing);
    result.copied += missing.length;
    result.present += batch.length - missing.length;
    progress.advance(batch.length);
    batch = [];
  };
  for await (const entry of entries) {
    batch.push(entry);
    if (batch.length >= BATCH) await flush();
  }
  await flush();
  return result;
}
