import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { digestOf } from '../../../src/digest.js';
import { createRedisStore } from '../../../src/store/redis.js';
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
