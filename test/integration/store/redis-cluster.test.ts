import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf } from '../../../src/digest.js';
import { parseStoreUrl } from '../../../src/store/url.js';
import { createRedisStore } from '../../../src/store/redis.js';
import { startRedisCluster, type RedisCluster } from '../../helpers/redis-cluster.js';
import { redisBinariesAvailable, serviceSkip } from '../../helpers/services.js';
import { describeStoreConformance } from '../../helpers/store-conformance.js';
import { STORE_TIMEOUT_MS } from '../../helpers/store-options.js';

const skip = await serviceSkip(
  'redis-server',
  redisBinariesAvailable,
  'install redis-server and redis-cli to run the Redis Cluster suite (apt-get install redis-server; bash .ci/services does this)',
);

const cluster: RedisCluster | undefined = skip ? undefined : await startRedisCluster(3, 1);
after(() => cluster?.stop());

const PAUSE_MS = 8000;
let pausedUntil = 0;

function clusterNodes() {
  const location = parseStoreUrl(cluster!.url);
  assert.equal(location.kind, 'redis-cluster');
  return location.nodes;
}

let restores = 0;
describeStoreConformance('redis-cluster', {
  skip,
  open: () => Promise.resolve(createRedisStore({ clusterNodes: clusterNodes(), timeoutMs: 1000 })),
  openEmpty: () =>
    Promise.resolve(
      createRedisStore({
        clusterNodes: clusterNodes(),
        keyPrefix: `restored${(restores += 1)}:`,
        timeoutMs: 1000,
      }),
    ),
  snapshotEntries: false,
  watched: true,
  // Every node stops answering clients for a while (a hung store); the cluster bus keeps running,
  // so no failover. A paused node does not take CLIENT UNPAUSE either, so the pause has a term.
  outage: {
    begin: async () => {
      pausedUntil = Date.now() + PAUSE_MS;
      await Promise.all(cluster!.nodes.map((node) => node.cli('client', 'pause', String(PAUSE_MS), 'all')));
    },
    end: () => sleep(Math.max(0, pausedUntil - Date.now())),
  },
});

describe('redis-cluster store specifics', { skip: skip ?? false }, () => {
  it('waits for one replica by default when the cluster has replicas', async () => {
    const store = createRedisStore({ clusterNodes: clusterNodes(), timeoutMs: STORE_TIMEOUT_MS });
    try {
      await store.ready();
      assert.equal(store.waitReplicas, 1);
    } finally {
      await store.close();
    }
  });

  it('spreads messages over every master and finds them all again', async () => {
    const store = createRedisStore({
      clusterNodes: clusterNodes(),
      keyPrefix: 'spread:',
      timeoutMs: STORE_TIMEOUT_MS,
    });
    try {
      const messages = Array.from({ length: 60 }, (_, index) => `spread ${Math.random()} ${index}`);
      await store.putMany(messages.map((message) => [digestOf(message), message] as const));
      const masters = await cluster!.masters();
      const perMaster = await Promise.all(
        masters.map(async (node) =>
          Number((await node.cli('eval', "return #redis.call('keys', 'spread:*')", '0')).trim()),
        ),
      );
      assert.equal(
        perMaster.reduce((sum, keys) => sum + keys, 0),
        60,
      );
      assert.ok(
        perMaster.every((keys) => keys > 0),
        `every master holds some: ${perMaster.join(', ')}`,
      );
      const listed = new Set<string>();
      for await (const [digest] of store.entries()) listed.add(digest.toString('hex'));
      for (const message of messages) assert.ok(listed.has(digestOf(message).toString('hex')));
    } finally {
      await store.close();
    }
  });

  it('a removal watcher hears its subscription drop before it counts as live again, so a removal published meanwhile is never taken as heard', async () => {
    const store = createRedisStore({ clusterNodes: clusterNodes(), timeoutMs: STORE_TIMEOUT_MS });
    const events: string[] = [];
    const watch = store.watchRemovals({
      removed: () => {},
      live: () => events.push('live'),
      lost: () => events.push('lost'),
    });
    const until = async (done: () => boolean, what: string) => {
      for (let attempt = 0; attempt < 500 && !done(); attempt += 1) await sleep(20);
      assert.ok(done(), what);
    };
    try {
      await until(() => events.includes('live'), 'the channel becomes live');
      const from = events.length;
      // Closes the subscriber's connection wherever it is: a removal published now reaches nobody.
      await Promise.all(cluster!.nodes.map((node) => node.cli('client', 'kill', 'type', 'pubsub')));
      await until(() => events.slice(from).includes('live'), 'the channel becomes live again');
      assert.equal(events[from], 'lost', `the drop is reported first: ${events.slice(from).join(', ')}`);
    } finally {
      await watch.close();
      await store.close();
    }
  });

  it('answers StoreUnavailable when a write cannot reach the replicas it must wait for', async () => {
    const store = createRedisStore({ clusterNodes: clusterNodes(), waitReplicas: 3, timeoutMs: 600 });
    try {
      await store.ready();
      const message = `too few replicas ${Math.random()}`;
      await assert.rejects(
        store.put(digestOf(message), message),
        /has 1 replica attached and each write waits for 3/,
      );
    } finally {
      await store.close();
    }
  });
});
