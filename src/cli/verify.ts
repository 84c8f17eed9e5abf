import { loadConfig } from '../config.js';
import { digestOf, formatDigest } from '../digest.js';
import { startProgress } from './progress.js';
import { openCommandStore } from './source.js';

/**
 * `digestd verify [--store <url>]`: re-hashes every stored message and reports each one whose
 * SHA-256 differs from the digest it is stored under. Exit status 1 when any is found.
 */
export async function verify(argv: readonly string[]): Promise<void> {
  const config = loadConfig(argv, undefined, 'verify');
  // The cache would only hold what is read once.
  const store = await openCommandStore('--store', { ...config.store, cacheBytes: 0, mustExist: true });
  try {
    const progress = startProgress({ label: 'verify', total: await store.count() });
    let checked = 0;
    let mismatched = 0;
    try {
      for await (const [digest, message] of store.entries()) {
        checked += 1;
        if (!digestOf(message).equals(digest)) {
          mismatched += 1;
          process.stderr.write(
            `verify: ${formatDigest(digest)} holds a message whose SHA-256 is ${formatDigest(digestOf(message))}\n`,
          );
        }
        progress.advance();
      }
    } finally {
      progress.stop();
    }
    process.stdout.write(`verify: checked ${checked}, mismatched ${mismatched}\n`);
    if (mismatched > 0) process.exitCode = 1;
  } finally {
    await store.close();
  }
}
