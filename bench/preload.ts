import { loadConfig } from '../src/config/load.js';
import { digestOf } from '../src/digest.js';
import { createLmdbStore } from '../src/store/lmdb.js';
import { LARGE_POOL_SIZES, REPEATED_MESSAGE, largeMessage, smallMessage } from './scenarios.js';

/**
 * Messages per durable transaction, as `digestd migrate` writes them. Transactions of tens of
 * thousands leave LMDB a free-page list of hundreds of thousands of pages, which it rewrites on
 * every later commit, so the durable POSTs measured afterwards would be measuring the preload
 * (docs/benchmarks.md, "Preloading").
 */
const BATCH = 500;

/** Each write's deadline, as `digestd migrate` sets it by default (--store-timeout). */
const storeTimeoutMs = loadConfig([], {}).store.timeoutMs;

/**
 * Writes small messages number `from` to `to - 1` (and, from zero, the large pools and the
 * repeated message) straight into the LMDB store in `dataDir`, through the project's own
 * LmdbStore.putMany, in durable batches. The server must not be running. Shows progress on stderr.
 */
export async function preload(dataDir: string, from: number, to: number): Promise<void> {
  const store = await createLmdbStore({ path: dataDir, timeoutMs: storeTimeoutMs });
  try {
    if (from === 0) {
      const fixed: string[] = [REPEATED_MESSAGE];
      for (const { count, bytes } of Object.values(LARGE_POOL_SIZES)) {
        for (let index = 0; index < count; index++) fixed.push(largeMessage(index, bytes));
      }
      await store.putMany(fixed.map((message) => [digestOf(message), message] as const));
    }
    const started = performance.now();
    const interactive = process.stderr.isTTY;
    let lastShown = 0;
    for (let start = from; start < to; start += BATCH) {
      const end = Math.min(to, start + BATCH);
      const entries: (readonly [Buffer, string])[] = [];
      for (let index = start; index < end; index++) {
        const message = smallMessage(index);
        entries.push([digestOf(message), message]);
      }
      await store.putMany(entries);
      const now = performance.now();
      if (now - lastShown > (interactive ? 250 : 5000) || end === to) {
        lastShown = now;
        const rate = (end - from) / ((now - started) / 1000);
        const eta = (to - end) / rate;
        const line = `preload: ${end.toLocaleString('en-US')} / ${to.toLocaleString('en-US')} messages (${Math.round(rate).toLocaleString('en-US')}/s, ${eta.toFixed(0)} s left)`;
        process.stderr.write(interactive ? `\r${line}   ` : `${line}\n`);
      }
    }
    if (interactive && to > from) process.stderr.write('\n');
  } finally {
    await store.close();
  }
}
