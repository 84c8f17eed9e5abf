import { loadConfig } from '../config.js';
import { formatDigest } from '../digest.js';
import { verifiedStore } from '../store/verified.js';
import { startProgress, type Progress } from './progress.js';
import { openCommandStore } from './source.js';

/**
 * `digestd verify [--store <url>]`: re-hashes every stored message and reports each one whose
 * SHA-256 differs from the digest it is stored under. Exit status 1 when any is found.
 */
export async function verify(argv: readonly string[]): Promise<void> {
  const config = loadConfig(argv, undefined, 'verify');
  let progress: Progress | undefined;
  let mismatched = 0;
  // The verified store's walk yields the entries that match their digest and reports the others.
  const store = verifiedStore(
    await openCommandStore('--store', { ...config.store, cacheBytes: 0, mustExist: true }),
    {
      onMismatch: ({ digest, actual }) => {
        mismatched += 1;
        process.stderr.write(
          `verify: ${formatDigest(digest)} holds a message whose SHA-256 is ${formatDigest(actual)}\n`,
        );
        progress?.advance();
      },
    },
  );
  try {
    progress = startProgress({ label: 'verify', total: await store.count() });
    let matched = 0;
    try {
      for await (const _entry of store.entries()) {
        matched += 1;
        progress.advance();
      }
    } finally {
      progress.stop();
    }
    process.stdout.write(`verify: checked ${matched + mismatched}, mismatched ${mismatched}\n`);
    if (mismatched > 0) process.exitCode = 1;
  } finally {
    await store.close();
  }
}
