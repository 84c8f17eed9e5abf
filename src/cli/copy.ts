import type { BackupRecord } from '../backup.js';
import type { Digest } from '../digest.js';
import { MessageRemoved } from '../errors.js';
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
  /** Messages not written because the target lists their digest as removed. */
  refused: number;
}

/**
 * Writes the entries missing from `target`, a batch at a time (one durable commit per batch where
 * the store allows): what migrate and restore share. Running it again after an interruption copies
 * only what is still missing. The entries come checked against their digests (verifiedEntries).
 * A message whose digest the target lists as removed is not written (counted as refused).
 */
export async function copyEntries(
  entries: AsyncIterable<readonly [Digest, string]>,
  target: MessageStore,
  progress: Progress,
): Promise<Copied> {
  const result: Copied = { copied: 0, present: 0, refused: 0 };
  let batch: (readonly [Digest, string])[] = [];
  const flush = async () => {
    const exists = await Promise.all(batch.map(([digest]) => target.has(digest)));
    const missing = batch.filter((_, index) => !exists[index]);
    try {
      await target.putMany(missing);
      result.copied += missing.length;
    } catch (error) {
      if (!(error instanceof MessageRemoved)) throw error;
      // Rare (a removed message in the source's walk): each again alone, to skip only those.
      for (const [digest, message] of missing) {
        try {
          await target.put(digest, message);
          result.copied += 1;
        } catch (alone) {
          if (!(alone instanceof MessageRemoved)) throw alone;
          result.refused += 1;
        }
      }
    }
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

/** Lists each digest on `target`'s denylist (removing its message there); answers how many were new. */
export async function copyRemovals(digests: AsyncIterable<Digest>, target: MessageStore): Promise<number> {
  let listed = 0;
  for await (const digest of digests) {
    if ((await target.remove(digest)) !== 'already_removed') listed += 1;
  }
  return listed;
}

/**
 * The messages of a backup's records, listing each removed digest on `target` as it is met, so a
 * removal recorded before a message is in place before that message could be written. `listed`
 * counts the digests that were new on the target.
 */
export async function* applyRemovals(
  records: AsyncIterable<BackupRecord>,
  target: MessageStore,
  listed: { count: number },
): AsyncIterable<readonly [Digest, string]> {
  for await (const record of records) {
    if (record.removed === undefined) yield [record.digest, record.message] as const;
    else if ((await target.remove(record.removed)) !== 'already_removed') listed.count += 1;
  }
}
