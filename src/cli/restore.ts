import { openBackup } from '../backup.js';
import { loadConfig } from '../config/load.js';
import { formatDigest, type Digest } from '../digest.js';
import { verifiedEntries } from '../store/verified.js';
import { applyRemovals, copyEntries } from './copy.js';
import { startProgress } from './progress.js';
import { openCommandStore } from './source.js';

/**
 * `digestd restore --from <file> --to <store>`: writes every message of a backup file into a
 * store, checking each against its digest, as migrate does (idempotent: what the store holds is
 * skipped, so a restore can be run again), and lists every removed digest of the file on the
 * store's denylist, in file order (a removed message is never written). The trailer is checked at
 * the end: a truncated or altered file stops with exit 1 after restoring the intact records before
 * the damage.
 */
export async function restore(argv: readonly string[]): Promise<void> {
  const config = loadConfig(argv, undefined, 'restore');
  const { from, to } = config.restore;
  const reader = await openBackup(from!);
  // The cache would only hold what we are about to forget.
  const target = await openCommandStore('--to', {
    ...config.store,
    cacheBytes: 0,
    url: to!,
    mustExist: false,
  }).catch(async (error: unknown) => {
    await reader.close();
    throw error;
  });
  try {
    const progress = startProgress({ label: 'restore', total: undefined });
    const mismatched: Digest[] = [];
    const listed = { count: 0 };
    const entries = verifiedEntries(
      applyRemovals(reader.records(), target, listed),
      'backup',
      ({ digest }) => {
        mismatched.push(digest);
        process.stderr.write(`restore: ${formatDigest(digest)} does not match its message; not copied\n`);
        progress.advance();
      },
    );
    let result;
    try {
      result = await copyEntries(entries, target, progress);
    } finally {
      progress.stop();
    }
    const { copied, present, refused } = result;
    process.stdout.write(
      `restore: copied ${copied}, already present ${present}, mismatched ${mismatched.length}, ` +
        `removed digests listed ${listed.count}, refused as removed ${refused} ` +
        `(backup of a ${reader.header.store} store taken ${reader.header.created})\n`,
    );
    if (mismatched.length > 0) process.exitCode = 1;
  } finally {
    await target.close();
  }
}
