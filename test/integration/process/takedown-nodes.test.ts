import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { digestOf, formatDigest } from '../../../src/digest.js';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS } from '../../../src/store/removal-feed.js';
import { sample } from '../../helpers/metrics-text.js';
import { startRedisCluster, type RedisCluster } from '../../helpers/redis-cluster.js';
import { postMessage, request, startServer, type RunningServer } from '../../helpers/server.js';
import {
  dropPostgresStore,
  postgresAvailable,
  redisBinariesAvailable,
  serviceSkip,
  TEST_POSTGRES_URL,
} from '../../helpers/services.js';

/**
 * Two digestd processes over one shared store, each with its cache in front of it (the default):
 * a message node B has cached is taken down on node A, and node B stops serving it within the
 * invalidation bound, also when B's notification channel was cut just before the removal.
 */

const ADMIN = 'takedown-admin-token-0123456789';

/** The stated bound: a heartbeat interval and a heartbeat timeout (src/store/removal-feed.ts). */
const BOUND_MS = HEARTBEAT_INTERVAL_MS + HEARTBEAT_TIMEOUT_MS;

/** Takedowns measured per store for the printed figures. */
const MEASURED = 20;

const postgresSkip = await serviceSkip(
  'PostgreSQL',
  () => postgresAvailable(),
  'bash .ci/services starts it',
);
const redisSkip = await serviceSkip('redis-server', redisBinariesAvailable, 'apt-get install redis-server');

async function cacheHits(node: RunningServer): Promise<number> {
  const text = (await request(`${node.url}/metrics`)).body;
  return sample(text, 'digestd_cache_hits_total') ?? 0;
}

/** GET of a digest on a node, its status. */
async function status(node: RunningServer, hex: string): Promise<number> {
  return (await request(`${node.url}/messages/${hex}`)).status;
}

/** Posts a message on A and has B read it twice, so that B serves it from its cache. */
async function cachedOnB(nodeA: RunningServer, nodeB: RunningServer, message: string): Promise<string> {
  const posted = await postMessage(nodeA, message);
  assert.equal(posted.status, 201, posted.body);
  const hex = formatDigest(digestOf(message));
  // B's cache keeps what it reads only while its removal channel is live (shortly after start).
  const deadline = Date.now() + 15_000;
  for (;;) {
    const hits = await cacheHits(nodeB);
    assert.equal(await status(nodeB, hex), 200);
    if ((await cacheHits(nodeB)) > hits) return hex;
    assert.ok(Date.now() < deadline, 'node B serves the message from its cache');
    await sleep(50);
  }
}

async function removeOn(node: RunningServer, hex: string): Promise<void> {
  const answer = await request(`${node.url}/messages/${hex}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${ADMIN}` },
  });
  assert.equal(answer.status, 200, answer.body);
}

/** When node B answered what, in ms from now, polling every few ms until 410 or `limitMs`. */
interface Gone {
  /** When the first 410 arrived. */
  goneAfter: number;
  /**
   * When the last request that was still answered 200 was sent: the bound holds when this is
   * within it (a request's own latency on a busy machine does not count against the node).
   */
  lastServedSentAt: number;
}

async function untilGone(node: RunningServer, hex: string, limitMs: number): Promise<Gone> {
  const started = performance.now();
  let lastServedSentAt = 0;
  for (;;) {
    const sentAt = performance.now() - started;
    const answer = await request(`${node.url}/messages/${hex}`);
    const goneAfter = performance.now() - started;
    if (answer.status === 410) {
      assert.equal(answer.json<{ code: string }>().code, 'MESSAGE_REMOVED');
      return { goneAfter, lastServedSentAt };
    }
    assert.equal(answer.status, 200, answer.body);
    lastServedSentAt = sentAt;
    assert.ok(goneAfter <= limitMs, `node B still served the message after ${goneAfter.toFixed(1)} ms`);
    await sleep(2);
  }
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** The takedown tests of two nodes over one store; `cut` breaks node B's notification channel. */
function describeTwoNodes(
  name: string,
  setup: {
    skip: string | undefined;
    start(): Promise<string>;
    cut(): Promise<void>;
    stop(): Promise<void>;
  },
): void {
  describe(
    `takedown across two nodes over ${name}, caches on`,
    { skip: setup.skip ?? false, timeout: 300_000 },
    () => {
      let nodes: [RunningServer, RunningServer];
      before(async () => {
        const store = await setup.start();
        const args = ['--no-tls', '--workers', '1', '--store', store, '--admin-token', ADMIN];
        nodes = [await startServer({ args }), await startServer({ args })];
      });
      after(async () => {
        await Promise.all((nodes ?? []).map((node) => node.stop()));
        await setup.stop();
      });

      it(`node B, which has the message cached, answers 410 within ${BOUND_MS} ms of its removal on node A, and refuses it`, async () => {
        const [nodeA, nodeB] = nodes;
        const latencies: number[] = [];
        for (let round = 0; round < MEASURED; round += 1) {
          const message = `taken down across nodes ${round} ${Math.random()}`;
          const hex = await cachedOnB(nodeA, nodeB, message);
          await removeOn(nodeA, hex);
          const { goneAfter, lastServedSentAt } = await untilGone(nodeB, hex, BOUND_MS * 4);
          assert.ok(
            lastServedSentAt <= BOUND_MS,
            `node B served a request sent ${lastServedSentAt} ms after`,
          );
          latencies.push(goneAfter);
          const again = await postMessage(nodeB, message);
          assert.equal(again.status, 410, again.body);
          assert.equal(again.json<{ code: string }>().code, 'MESSAGE_REMOVED');
        }
        process.stdout.write(
          `# ${name}: 410 on node B after its removal on node A: p50 ${percentile(latencies, 0.5).toFixed(1)} ms, ` +
            `p95 ${percentile(latencies, 0.95).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms (${latencies.length} removals)\n`,
        );
      });

      it(`node B stops serving its cached copy within ${BOUND_MS} ms when its channel was cut before the removal`, async () => {
        const [nodeA, nodeB] = nodes;
        const message = `removed while the channel is down ${Math.random()}`;
        const hex = await cachedOnB(nodeA, nodeB, message);
        await setup.cut();
        await removeOn(nodeA, hex);
        const { goneAfter, lastServedSentAt } = await untilGone(nodeB, hex, BOUND_MS * 4);
        assert.ok(lastServedSentAt <= BOUND_MS, `node B served a request sent ${lastServedSentAt} ms after`);
        process.stdout.write(
          `# ${name}: with the channel cut, 410 on node B after ${goneAfter.toFixed(1)} ms\n`,
        );
        // The channel comes back, and so does the cache.
        await cachedOnB(nodeA, nodeB, `after the cut ${Math.random()}`);
      });
    },
  );
}

const table = `digestd_takedown_${process.pid}_${randomBytes(4).toString('hex')}`;
describeTwoNodes('PostgreSQL', {
  skip: postgresSkip,
  start: () => Promise.resolve(`${TEST_POSTGRES_URL}?table=${table}`),
  // Ends every LISTEN connection (node A's too): the NOTIFY of the removal reaches nobody.
  async cut() {
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    await client.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'digestd-listen'",
    );
    await client.end();
  },
  async stop() {
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    await dropPostgresStore(client, table);
    await client.end();
  },
});

let cluster: RedisCluster | undefined;
describeTwoNodes('Redis Cluster', {
  skip: redisSkip,
  async start() {
    cluster = await startRedisCluster(3, 1);
    return cluster.url;
  },
  // Closes every subscriber's connection on every node: the PUBLISH of the removal reaches nobody.
  async cut() {
    await Promise.all(cluster!.nodes.map((node) => node.cli('client', 'kill', 'type', 'pubsub')));
  },
  async stop() {
    await cluster?.stop();
  },
});
