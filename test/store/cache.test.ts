import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { digestOf } from '../../src/digest.js';
import { StoreUnavailable } from '../../src/errors.js';
import { workerRegistry } from '../../src/metrics.js';
import { CachedStore } from '../../src/store/cache.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { postgresAvailable, serviceSkip, TEST_POSTGRES_URL } from '../helpers/services.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const skip = await serviceSkip(
  'PostgreSQL',
  () => postgresAvailable(),
  'the cache tests run in front of a real PostgreSQL store (bash .ci/services starts it)',
);
const table = `digestd_cache_${process.pid}_${randomBytes(4).toString('hex')}`;
const target = new URL(TEST_POSTGRES_URL);
const proxy = skip ? undefined : await startTcpProxy(target.hostname, Number(target.port || 5432));
const throughProxy = new URL(TEST_POSTGRES_URL);
throughProxy.hostname = '127.0.0.1';
throughProxy.port = String(proxy?.port ?? 0);

after(async () => {
  await proxy?.close();
  if (skip) return;
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.end();
});

describe('the message cache in front of a remote store', { skip: skip ?? false }, () => {
  it('answers a cached message without the network, and only that', async () => {
    const cached = new CachedStore(
      createPostgresStore({ connectionString: throughProxy.toString(), table, timeoutMs: 500 }),
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
    const nodeA = new CachedStore(createPostgresStore({ connectionString: TEST_POSTGRES_URL, table }));
    const nodeB = new CachedStore(createPostgresStore({ connectionString: TEST_POSTGRES_URL, table }));
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
    const cached = new CachedStore(createPostgresStore({ connectionString: TEST_POSTGRES_URL, table }), {
      maxBytes,
    });
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
