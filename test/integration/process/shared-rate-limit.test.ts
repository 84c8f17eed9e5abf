import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { startRedisServer, type RedisServerProcess } from '../../helpers/redis-server.js';
import { postMessage, startServer, temporaryDirectory } from '../../helpers/server.js';
import { redisBinariesAvailable, serviceSkip } from '../../helpers/services.js';

const skip = await serviceSkip(
  'redis-server',
  redisBinariesAvailable,
  'install redis-server and redis-cli (apt-get install redis-server; bash .ci/services does this)',
);
const directory = await temporaryDirectory('digestd-rate-redis-');
const redis: RedisServerProcess | undefined = skip ? undefined : await startRedisServer({ directory });
after(async () => {
  await redis?.kill();
  await rm(directory, { recursive: true, force: true });
});

describe('rate limit over a Redis store', { skip: skip ?? false }, () => {
  it('is shared by two nodes: the client gets 429 once both together passed the limit', async () => {
    const args = ['--workers', '1', '--store', `redis://127.0.0.1:${redis!.port}`, '--rate-limit', '6/min'];
    const [first, second] = await Promise.all([startServer({ args }), startServer({ args })]);
    try {
      const statuses: number[] = [];
      for (let index = 0; index < 4; index += 1) {
        statuses.push((await postMessage(first, `limited ${index}`)).status);
        statuses.push((await postMessage(second, `limited ${index}`)).status);
      }
      // Each node alone saw 4 requests, under its limit of 6; together they saw 8.
      assert.deepEqual(statuses.slice(0, 6), [201, 201, 201, 201, 201, 201]);
      assert.deepEqual(statuses.slice(6), [429, 429]);
      const limited = await postMessage(first, 'one more');
      assert.equal(limited.status, 429);
      assert.ok(Number(limited.headers['retry-after']) >= 1);
      assert.equal(limited.json<{ code: string }>().code, 'TOO_MANY_REQUESTS');
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });
});
