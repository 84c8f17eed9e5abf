import { openBackup } from '../backup.js';
import { loadConfig } from '../config/load.js';
import { formatDigest, type Digest } from '../digest.js';
import { verifiedEntries, verifiedStore, type Mismatch } from '../store/verified.js';
import { startProgress, type Progress } from './progress.js';
import { openCommandStore } from './source.js';

/**
 * `digestd verify [--store <url>]`: re-hashes every stored message and reports each one whose
 * SHA-256 differs from the digest it is stored under. `digestd verify --backup <file>` does the
 * same for a backup file and checks its trailer (count and checksum). Exit status 1 when any is
 * found.
 */
export async function verify(argv: readonly string[]): Promise<void> {
  const config = loadConfig(argv, undefined, 'verify');
  let progress: Progress | undefined;
  let mismatched = 0;
  const onMismatch = ({ digest, actual }: Mismatch) => {
    mismatched += 1;
    process.stderr.write(
      `verify: ${formatDigest(digest)} holds a message whose SHA-256 is ${formatDigest(actual)}\n`,
    );
    progress?.advance();
  };
  /** Walks the entries that match (the others go to onMismatch) and prints the counts. */
  const check = async (entries: AsyncIterable<readonly [Digest, string]>, total: number | undefined) => {
    progress = startProgress({ label: 'verify', total });
    let matched = 0;
    try {
      for await (const _entry of entries) {
        matched += 1;
        progress.advance();
      }
    } finally {
      progress.stop();
    }
    process.stdout.write(`verify: checked ${matched + mismatched}, mismatched ${mismatched}\n`);
    if (mismatched > 0) process.exitCode = 1;
  };

  if (config.verify.backup !== undefined) {
    const reader = await openBackup(config.verify.backup);
    await check(verifiedEntries(reader.entries(), 'backup', onMismatch), undefined);
    return;
  }
  // The verified store's walk yields the entries that match their digest and reports the others.
  const store = verifiedStore(
    await openCommandStore('--store', { ...config.store, cacheBytes: 0, mustExist: true }),
    { onMismatch },
  );
  try {
    await check(store.entries(), await store.count());
  } finally {
    await store.close();
  }
}
