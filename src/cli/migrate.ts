import { loadConfig } from '../config/load.js';
import { formatDigest, type Digest } from '../digest.js';
import { verifiedStore } from '../store/verified.js';
import { copyEntries, copyRemovals } from './copy.js';
import { startProgress, type Progress } from './progress.js';
import { openCommandStore } from './source.js';

/**
 * `digestd migrate --from <store> --to <store>`: copies every message, checking that each one
 * hashes to its key, and the denylist of removed digests: first, so that no removed message is
 * written, and again after the messages, for what was removed meanwhile. Idempotent and
 * resumable: a message already in the target is skipped, so running it again after an
 * interruption copies only what is missing. Entries whose digest does not match are reported on
 * stderr and not copied; the exit status is then 1.
 */
export async function migrate(argv: readonly string[]): Promise<void> {
  const config = loadConfig(argv, undefined, 'migrate');
  const { from, to } = config.migrate;
  // The cache would only hold what we are about to forget. --disk-reserve is serve's: a copy
  // into LMDB runs until the disk refuses it, and says so.
  const settings = { ...config.store, cacheBytes: 0, diskReserveBytes: 0 };
  let progress: Progress | undefined;
  const mismatched: Digest[] = [];
  // The verified store's walk yields the entries that match their digest and reports the others.
  const source = verifiedStore(
    await openCommandStore('--from', { ...settings, url: from!, mustExist: true }),
    {
      onMismatch: ({ digest }) => {
        mismatched.push(digest);
        process.stderr.write(`migrate: ${formatDigest(digest)} does not match its message; not copied\n`);
        progress?.advance();
      },
    },
  );
  const target = await openCommandStore('--to', { ...settings, url: to!, mustExist: false }).catch(
    async (error: unknown) => {
      await source.close();
      throw error;
    },
  );
  try {
    progress = startProgress({ label: 'migrate', total: await source.count() });
    let result;
    let listed = await copyRemovals(source.removedDigests(), target);
    try {
      result = await copyEntries(source.entries(), target, progress);
    } finally {
      progress.stop();
    }
    listed += await copyRemovals(source.removedDigests(), target);
    const { copied, present, refused } = result;
    process.stdout.write(
      `migrate: copied ${copied}, already present ${present}, mismatched ${mismatched.length}, ` +
        `removed digests listed ${listed}, refused as removed ${refused}\n`,
    );
    if (mismatched.length > 0) process.exitCode = 1;
  } finally {
    await Promise.allSettled([source.close(), target.close()]);
  }
}
