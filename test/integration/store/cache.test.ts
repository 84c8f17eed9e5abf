import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { digestOf } from '../../../src/digest.js';
import { StoreUnavailable } from '../../../src/errors.js';
import { metrics, workerRegistry } from '../../../src/metrics.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { cachedStore } from '../../../src/store/cache.js';
import { createPostgresStore } from '../../../src/store/postgres.js';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS } from '../../../src/store/removal-feed.js';
import { MUST_WAIT, REMOVED } from '../../../src/store/types.js';
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

/** Waits (bounded) until the cache's removal channel is live, so that it keeps what it reads. */
async function untilLive(cached: { readonly live: boolean }): Promise<void> {
  for (let attempt = 0; attempt < 300 && !cached.live; attempt += 1) await sleep(20);
  assert.ok(cached.live, 'the removal channel becomes live');
}

/** The stated bound (src/store/removal-feed.ts). */
const BOUND_MS = HEARTBEAT_INTERVAL_MS + HEARTBEAT_TIMEOUT_MS;

describe('the message cache in front of a remote store', { skip: skip ?? false }, () => {
  it('answers a cached message without the network, and only that', async () => {
    const cached = cachedStore(
      createPostgresStore({ connectionString: urlThroughProxy, table, timeoutMs: 500 }),
      SERVED,
    );
    try {
      await untilLive(cached);
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

  it('drops a message removed through another node once told, and then answers REMOVED', async () => {
    const nodeA = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    const nodeB = cachedStore(
      createPostgresStore({ connectionString: TEST_POSTGRES_URL, table, timeoutMs: STORE_TIMEOUT_MS }),
      SERVED,
    );
    try {
      await untilLive(nodeB);
      const message = `cached, then removed elsewhere ${Math.random()}`;
      await nodeA.put(digestOf(message), message);
      assert.equal(await nodeB.get(digestOf(message)), message);
      assert.equal(nodeB.getSync(digestOf(message)), message, 'node B holds it in its cache');
      await nodeA.remove(digestOf(message));
      const started = performance.now();
      while (nodeB.getSync(digestOf(message)) !== MUST_WAIT && performance.now() - started < 4 * BOUND_MS) {
        await sleep(1);
      }
      const elapsed = performance.now() - started;
      assert.equal(nodeB.getSync(digestOf(message)), MUST_WAIT, 'node B no longer answers from its cache');
      assert.ok(elapsed <= BOUND_MS, `dropped after ${elapsed.toFixed(1)} ms`);
      assert.equal(await nodeB.get(digestOf(message)), REMOVED);
    } finally {
      await Promise.all([nodeA.close(), nodeB.close()]);
    }
  });

  it('stops answering from the cache within the bound when its channel stalls without a word, and comes back', async () => {
    const nodeA = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    // Node B reaches PostgreSQL, its LISTEN connection included, through the stallable proxy.
    const nodeB = cachedStore(
      createPostgresStore({ connectionString: urlThroughProxy, table, timeoutMs: STORE_TIMEOUT_MS }),
      SERVED,
    );
    try {
      await untilLive(nodeB);
      const message = `cached, then removed while node B hears nothing ${Math.random()}`;
      await nodeA.put(digestOf(message), message);
      assert.equal(await nodeB.get(digestOf(message)), message);
      proxy!.stall();
      await nodeA.remove(digestOf(message));
      const started = performance.now();
      while (nodeB.live && performance.now() - started < 4 * BOUND_MS) await sleep(1);
      const elapsed = performance.now() - started;
      assert.equal(nodeB.live, false, 'the channel counts as lost');
      assert.equal(nodeB.getSync(digestOf(message)), MUST_WAIT, 'the cached copy is no longer served');
      assert.ok(elapsed <= BOUND_MS, `lost after ${elapsed.toFixed(1)} ms`);
      proxy!.resume();
      await untilLive(nodeB);
      assert.equal(await nodeB.get(digestOf(message)), REMOVED);
    } finally {
      proxy!.resume();
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
      await untilLive(cached);
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
