import { writeBackup } from '../backup.js';
import { loadConfig } from '../config/load.js';
import { formatDigest } from '../digest.js';
import { verifiedStore } from '../store/verified.js';
import { startProgress, type Progress } from './progress.js';
import { openCommandStore } from './source.js';

/**
 * `digestd backup [--store <url>] --to <file>`: writes every message of a store to a backup file
 * (docs/backup.md) while the store keeps serving. On LMDB and PostgreSQL the file is one snapshot;
 * on Redis it holds at least every message stored before the backup began. Entries whose message
 * does not hash to their digest are named on stderr and left out; the exit status is then 1.
 */
export async function backup(argv: readonly string[]): Promise<void> {
  const config = loadConfig(argv, undefined, 'backup');
  const file = config.backup.to!;
  let progress: Progress | undefined;
  let mismatched = 0;
  // The cache would only hold what is read once. The verified store's walk leaves out, and
  // reports, every entry that does not match its digest: a backup never carries one forward.
  const store = verifiedStore(
    await openCommandStore('--store', { ...config.store, cacheBytes: 0, mustExist: true }),
    {
      onMismatch: ({ digest, actual }) => {
        mismatched += 1;
        process.stderr.write(
          `backup: ${formatDigest(digest)} holds a message whose SHA-256 is ${formatDigest(actual)}; left out\n`,
        );
        progress?.advance();
      },
    },
  );
  try {
    const started = Date.now();
    progress = startProgress({ label: 'backup', total: await store.count() });
    let written;
    try {
      written = await writeBackup(store, file, { onEntry: () => progress?.advance() });
    } finally {
      progress.stop();
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `backup: wrote ${written.messages} messages, ${written.removed} removed digests, mismatched ${mismatched}, ` +
        `${written.bytes} bytes in ${seconds} s to ${file} (sha256 ${written.sha256})\n`,
    );
    if (mismatched > 0) process.exitCode = 1;
  } finally {
    await store.close();
  }
}
