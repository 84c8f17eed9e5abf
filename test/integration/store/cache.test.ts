import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { digestOf } from '../../../src/digest.js';
import { StoreUnavailable } from '../../../src/errors.js';
import { metrics, workerRegistry } from '../../../src/metrics.js';
import { cachedStore } from '../../../src/store/cache.js';
import { createPostgresStore } from '../../../src/store/postgres.js';
import { postgresForTest, TEST_POSTGRES_URL } from '../../helpers/services.js';
import { STORE_TIMEOUT_MS } from '../../helpers/store-options.js';

/** The cache as digestd builds it: 64 MiB, counting into its metrics. */
const SERVED = {
  maxBytes: 64 * 1024 * 1024,
  counters: { hits: metrics.cacheHits, misses: metrics.cacheMisses },
};

const { skip, table, proxy, urlThroughProxy } = await postgresForTest(
  'digestd_cache',
  'the cache tests run in front of a real PostgreSQL store (bash .ci/services starts it)',
);

describe('the message cache in front of a remote store', { skip: skip ?? false }, () => {
  it('answers a cached message without the network, and only that', async () => {
    const cached = cachedStore(
      createPostgresStore({ connectionString: urlThroughProxy, table, timeoutMs: 500 }),
      SERVED,
    );
    try {
      const seen = `cached ${Math.random()}`;
      const unseen = `not cached ${Math.random()}`;
      await cached.put(digestOf(seen), seen);
      proxy!.stall();
      const hitsBefore = await counterValue('digestd_cache_hits_total');
      const missesBefore = await counterValue('digestd_cache_misses_total');
      assert.equal(await cached.get(digestOf(seen)), seen);
      assert.equal(await counterValue('digestd_cache_hits_total'), hitsBefore + 1);
      assert.equal(await cached.has(digestOf(seen)), true);
      await assert.rejects(cached.get(digestOf(unseen)), StoreUnavailable);
      assert.equal(await counterValue('digestd_cache_misses_total'), missesBefore + 1);
    } finally {
      proxy!.resume();
      await cached.close();
    }
  });

  it('never caches absence: a message written through another node is visible at once', async () => {
    const nodeA = cachedStore(
      createPostgresStore({ connectionString: TEST_POSTGRES_URL, table, timeoutMs: STORE_TIMEOUT_MS }),
      SERVED,
    );
    const nodeB = cachedStore(
      createPostgresStore({ connectionString: TEST_POSTGRES_URL, table, timeoutMs: STORE_TIMEOUT_MS }),
      SERVED,
    );
    try {
      const message = `later ${Math.random()}`;
      assert.equal(await nodeB.get(digestOf(message)), undefined);
      await nodeA.put(digestOf(message), message);
      assert.equal(await nodeB.get(digestOf(message)), message);
    } finally {
      await Promise.all([nodeA.close(), nodeB.close()]);
    }
  });

  it('stays within its byte budget, and keeps no message larger than the budget', async () => {
    const maxBytes = 64 * 1024;
    const cached = cachedStore(
      createPostgresStore({ connectionString: TEST_POSTGRES_URL, table, timeoutMs: STORE_TIMEOUT_MS }),
      {
        maxBytes,
      },
    );
    try {
      for (let index = 0; index < 40; index += 1) {
        const message = `${index} `.padEnd(4000, 'é');
        await cached.put(digestOf(message), message);
        assert.ok(cached.cachedBytes <= maxBytes, `${cached.cachedBytes} <= ${maxBytes}`);
      }
      assert.ok(cached.cachedBytes > maxBytes / 2, 'the cache is used');
      const huge = 'h'.repeat(maxBytes * 2);
      await cached.put(digestOf(huge), huge);
      assert.ok(cached.cachedBytes <= maxBytes);
      assert.equal(await cached.get(digestOf(huge)), huge);
    } finally {
      await cached.close();
    }
  });
});

async function counterValue(name: string): Promise<number> {
  const metric = await workerRegistry.getSingleMetric(name)?.get();
  return metric?.values[0]?.value ?? 0;
}
