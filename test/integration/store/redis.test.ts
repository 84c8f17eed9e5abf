import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { digestOf } from '../../../src/digest.js';
import { cachedStore } from '../../../src/store/cache.js';
import { createRedisStore } from '../../../src/store/redis.js';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS } from '../../../src/store/removal-feed.js';
import { MUST_WAIT, REMOVED } from '../../../src/store/types.js';
import { startTcpProxy } from '../../helpers/tcp-proxy.js';
import { startRedisServer, type RedisServerProcess } from '../../helpers/redis-server.js';
import { temporaryDirectory } from '../../helpers/server.js';
import { redisBinariesAvailable, serviceSkip } from '../../helpers/services.js';
import { describeStoreConformance } from '../../helpers/store-conformance.js';
import { STORE_TIMEOUT_MS } from '../../helpers/store-options.js';

const skip = await serviceSkip(
  'redis-server',
  redisBinariesAvailable,
  'install redis-server and redis-cli (apt-get install redis-server; bash .ci/services does this)',
);

const directory = await temporaryDirectory('digestd-redis-');
const server: RedisServerProcess | undefined = skip ? undefined : await startRedisServer({ directory });
after(async () => {
  await server?.kill();
  await rm(directory, { recursive: true, force: true });
});
const url = `redis://127.0.0.1:${server?.port ?? 0}`;

let restores = 0;
describeStoreConformance('redis', {
  skip,
  open: () => Promise.resolve(createRedisStore({ url, timeoutMs: 1000 })),
  openEmpty: () =>
    Promise.resolve(createRedisStore({ url, keyPrefix: `restored${(restores += 1)}:`, timeoutMs: 1000 })),
  snapshotEntries: false,
  watched: true,
  // A crash: the process is killed, then restarted on the same port with its append-only file.
  outage: {
    begin: () => server!.kill(),
    end: () => server!.restart(),
  },
});

describe('redis store specifics', { skip: skip ?? false }, () => {
  it('keeps each message under a short prefix and the 32 binary digest bytes', async () => {
    const store = createRedisStore({ url, keyPrefix: 'x:', timeoutMs: STORE_TIMEOUT_MS });
    const direct = new Redis(url);
    try {
      await store.ready();
      const message = `binary key ${Math.random()}`;
      await store.put(digestOf(message), message);
      const key = Buffer.concat([Buffer.from('x:'), digestOf(message)]);
      assert.equal(key.length, 34);
      assert.equal(await direct.get(key), message);
    } finally {
      direct.disconnect();
      await store.close();
    }
  });

  it('a cache in front of it stops answering within the bound when pub/sub stalls without a word, and comes back', async () => {
    const bound = HEARTBEAT_INTERVAL_MS + HEARTBEAT_TIMEOUT_MS;
    const proxy = await startTcpProxy('127.0.0.1', server!.port);
    const nodeA = createRedisStore({ url, timeoutMs: STORE_TIMEOUT_MS });
    // Node B reaches Redis, its subscription included, through the stallable proxy.
    const nodeB = cachedStore(
      createRedisStore({ url: `redis://127.0.0.1:${proxy.port}`, timeoutMs: STORE_TIMEOUT_MS }),
      { maxBytes: 1024 * 1024 },
    );
    try {
      for (let attempt = 0; attempt < 300 && !nodeB.live; attempt += 1) await sleep(20);
      assert.ok(nodeB.live, 'the removal channel becomes live');
      const message = `cached on B, removed through A ${Math.random()}`;
      await nodeA.put(digestOf(message), message);
      assert.equal(await nodeB.get(digestOf(message)), message);
      assert.equal(nodeB.getSync(digestOf(message)), message, 'node B holds it in its cache');
      proxy.stall();
      await nodeA.remove(digestOf(message));
      const started = performance.now();
      while (nodeB.live && performance.now() - started < 4 * bound) await sleep(1);
      const elapsed = performance.now() - started;
      assert.equal(nodeB.getSync(digestOf(message)), MUST_WAIT, 'the cached copy is no longer served');
      assert.ok(elapsed <= bound, `lost after ${elapsed.toFixed(1)} ms`);
      proxy.resume();
      for (let attempt = 0; attempt < 500 && !nodeB.live; attempt += 1) await sleep(20);
      assert.ok(nodeB.live, 'live again once the connection is made again');
      assert.equal(await nodeB.get(digestOf(message)), REMOVED);
    } finally {
      proxy.resume();
      await Promise.all([nodeA.close(), nodeB.close()]);
      await proxy.close();
    }
  });

  it('waits for no replica when the server has none', async () => {
    const store = createRedisStore({ url, timeoutMs: STORE_TIMEOUT_MS });
    try {
      await store.ready();
      assert.equal(store.waitReplicas, 0);
    } finally {
      await store.close();
    }
  });
});
