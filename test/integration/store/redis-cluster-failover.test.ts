import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import calculateSlot from 'cluster-key-slot';
import { digestOf } from '../../../src/digest.js';
import { startRedisCluster, type RedisCluster } from '../../helpers/redis-cluster.js';
import { postMessage, request, startServer, type RunningServer } from '../../helpers/server.js';
import { redisBinariesAvailable, serviceSkip } from '../../helpers/services.js';

const skip = await serviceSkip(
  'redis-server',
  redisBinariesAvailable,
  'install redis-server and redis-cli to run the Redis Cluster failover test (apt-get install redis-server; bash .ci/services does this)',
);

const STORE_TIMEOUT_MS = 2000;
/** Time a reply may take beyond --store-timeout: the HTTPS round trip on a busy two-core machine. */
const REPLY_MARGIN_MS = 1000;
/** ioredis re-reads CLUSTER SLOTS this often (src/store/redis.ts): a promoted master is known within it. */
const SLOTS_REFRESH_MS = 1000;
const READERS = 6;
const WRITERS = 3;

interface Outcome {
  kind: 'read' | 'write';
  status: number;
  startedAt: number;
  ms: number;
  body: string;
  /** The digest read. */
  hex?: string;
}

/** The slot ranges a node serves, from its own CLUSTER NODES line. */
async function slotRanges(node: { cli(...args: string[]): Promise<string> }): Promise<[number, number][]> {
  const mine = (await node.cli('cluster', 'nodes')).split('\n').find((line) => line.includes('myself'));
  assert.ok(mine);
  return mine
    .split(' ')
    .slice(8)
    .filter((field) => /^\d+(-\d+)?$/.test(field))
    .map((field) => {
      const [first, last = first] = field.split('-').map(Number);
      return [first!, last!];
    });
}

function sample(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.split(' ').pop());
  }
  return total;
}

describe('Redis Cluster failover under load', { skip: skip ?? false }, () => {
  let cluster: RedisCluster;
  let server: RunningServer;
  const agent = new Agent({ keepAlive: true, maxSockets: READERS + WRITERS + 2 });
  const preloaded: { hex: string; message: string }[] = [];

  before(async () => {
    cluster = await startRedisCluster(3, 1);
    server = await startServer({
      args: [
        '--store',
        cluster.url,
        '--cache-size',
        '0',
        '--store-timeout',
        String(STORE_TIMEOUT_MS),
        '--workers',
        '2',
      ],
      // Six redis-server processes and two workers starting on a shared two-core machine.
      timeoutMs: 60_000,
    });
    // A node may list a shard's replica in CLUSTER SLOTS a moment after the others: until digestd
    // reads it, writes to that shard are refused (503) rather than acknowledged on the master alone.
    const formedBy = Date.now() + 20_000;
    for (let index = 0; index < 300; index += 1) {
      const message = `preloaded ${index} ${Math.random()}`;
      let reply = await postMessage(server, message, { agent });
      while (reply.status === 503 && /replicas attached/.test(reply.body) && Date.now() < formedBy) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        reply = await postMessage(server, message, { agent });
      }
      assert.equal(reply.status, 201, reply.body);
      preloaded.push({ hex: digestOf(message).toString('hex'), message });
    }
  });
  after(async () => {
    agent.destroy();
    if (server !== undefined) await server.stop();
    await cluster?.stop();
  });

  const get = (hex: string) =>
    request(`${server.url}/messages/${hex}`, { ca: server.ca, agent, timeoutMs: 3 * STORE_TIMEOUT_MS });

  it('costs one shard its writes until a replica is back, never reads, and loses nothing acknowledged', async () => {
    const outcomes: Outcome[] = [];
    const acknowledged = new Map<string, string>();
    let loading = true;
    const timed = async (
      kind: Outcome['kind'],
      send: () => Promise<{ status: number; body: string }>,
      hex?: string,
    ) => {
      const startedAt = Date.now();
      let status = 0;
      let body = '';
      try {
        ({ status, body } = await send());
      } catch (error) {
        body = (error as Error).message;
      }
      outcomes.push({ kind, status, startedAt, ms: Date.now() - startedAt, body, ...(hex && { hex }) });
      return status;
    };
    const reader = async () => {
      for (let count = 0; loading && count < 100_000; count += 1) {
        const { hex } = preloaded[Math.floor(Math.random() * preloaded.length)]!;
        await timed('read', () => get(hex), hex);
      }
    };
    const writer = async (id: number) => {
      for (let count = 0; loading && count < 100_000; count += 1) {
        const message = `written under load ${id} ${count} ${Math.random()}`;
        const status = await timed('write', () =>
          postMessage(server, message, { agent, timeoutMs: 3 * STORE_TIMEOUT_MS }),
        );
        if (status === 201) acknowledged.set(digestOf(message).toString('hex'), message);
        // A refused write is retried by a client after a moment, not in a tight loop.
        else await sleep(50);
      }
    };
    const load = Promise.all([
      ...Array.from({ length: READERS }, () => reader()),
      ...Array.from({ length: WRITERS }, (_, id) => writer(id)),
    ]);

    let onVictim: (hex: string) => boolean = () => false;
    let failedOverAt = 0;
    let rejoinedAt = 0;
    try {
      await sleep(2000);
      const [victim] = await cluster.masters();
      assert.ok(victim);
      const ranges = await slotRanges(victim);
      // The default key prefix (m:) and the 32 digest bytes, as the store keys them.
      onVictim = (hex) => {
        const slot = calculateSlot(Buffer.concat([Buffer.from('m:'), Buffer.from(hex, 'hex')]));
        return ranges.some(([first, last]) => slot >= first && slot <= last);
      };
      await victim.kill();
      const killedAt = Date.now();
      // The replica takes over after cluster-node-timeout; the cluster is whole again, without replica.
      await cluster.waitHealthy(0, 30_000);
      failedOverAt = Date.now();
      process.stdout.write(`failover took ${failedOverAt - killedAt} ms\n`);
      await sleep(5000);
      await victim.restart();
      await cluster.waitHealthy(1, 60_000);
      rejoinedAt = Date.now();
      await sleep(3000);
    } finally {
      loading = false;
      await load;
    }

    const settledAt = failedOverAt + SLOTS_REFRESH_MS;
    // The failed-over shard's own reads: the ones a WAIT on the promoted master could hold up.
    const readsAfter = outcomes.filter(
      (each) => each.kind === 'read' && each.startedAt >= settledAt && onVictim(each.hex!),
    );
    const readsOk = readsAfter.filter((each) => each.status === 200).length;
    const count = (kind: Outcome['kind'], from = 0, to = Infinity) => {
      const byStatus: Record<number, number> = {};
      for (const each of outcomes) {
        if (each.kind !== kind || each.startedAt < from || each.startedAt >= to) continue;
        byStatus[each.status] = (byStatus[each.status] ?? 0) + 1;
      }
      return JSON.stringify(byStatus);
    };
    const slowest = Math.max(...outcomes.map((each) => each.ms));
    process.stdout.write(
      `reads: all ${count('read')}, of the failed-over shard after the failover ${readsOk}/${readsAfter.length} answered 200; ` +
        `writes: all ${count('write')}, failover to rejoin ${count('write', settledAt, rejoinedAt)}, ` +
        `after rejoin ${count('write', rejoinedAt)}; slowest reply ${slowest} ms\n`,
    );

    assert.ok(readsAfter.length > 100, `enough reads of that shard after the failover: ${readsAfter.length}`);
    assert.ok(
      readsOk >= 0.99 * readsAfter.length,
      `reads after the failover: ${readsOk}/${readsAfter.length}`,
    );
    for (const each of outcomes) {
      assert.ok(
        each.ms <= STORE_TIMEOUT_MS + REPLY_MARGIN_MS,
        `a ${each.kind} took ${each.ms} ms (${each.status} ${each.body})`,
      );
    }
    for (const each of outcomes) {
      if (each.status === 0) assert.fail(`a ${each.kind} got no answer: ${each.body}`);
    }

    // While the promoted master has no replica its writes are refused at once, saying why;
    // the other shards keep taking writes. Until digestd has seen the new topology a write may
    // still fail otherwise (a connection to the dead master): on a loaded machine that can take
    // longer than the slots refresh. From its first refusal on, every refusal says why.
    const learnedAt = Math.min(
      ...outcomes
        .filter((each) => each.kind === 'write' && /has 0 replicas attached/.test(each.body))
        .map((each) => each.startedAt + each.ms),
    );
    process.stdout.write(
      `the first write refused for want of a replica ended ${learnedAt - failedOverAt} ms after the failover\n`,
    );
    assert.ok(
      learnedAt - failedOverAt <= 5 * SLOTS_REFRESH_MS,
      `digestd refuses writes to the shard without a replica within ${5 * SLOTS_REFRESH_MS} ms of the failover`,
    );
    const betweenWrites = outcomes.filter(
      (each) =>
        each.kind === 'write' &&
        each.startedAt >= Math.max(settledAt, learnedAt) &&
        each.startedAt < rejoinedAt,
    );
    const refused = betweenWrites.filter((each) => each.status === 503);
    assert.ok(refused.length > 0, 'writes to the shard without a replica answer 503');
    for (const each of refused) assert.match(each.body, /has 0 replicas attached and each write waits for 1/);
    assert.ok(
      betweenWrites.some((each) => each.status === 201),
      'the other shards take writes',
    );

    // Once the old master is back as a replica, writes to every shard succeed again.
    let recovered = false;
    for (let attempt = 0; attempt < 40 && !recovered; attempt += 1) {
      const messages = Array.from(
        { length: 30 },
        (_, index) => `after rejoin ${attempt} ${index} ${Math.random()}`,
      );
      const replies = await Promise.all(messages.map((message) => postMessage(server, message, { agent })));
      for (const [index, reply] of replies.entries()) {
        if (reply.status === 201)
          acknowledged.set(digestOf(messages[index]!).toString('hex'), messages[index]!);
      }
      recovered = replies.every((reply) => reply.status === 201);
      if (!recovered) await sleep(250);
    }
    assert.ok(recovered, 'writes to every shard succeed after the old master rejoined');

    // Nothing acknowledged is lost: every 201 reads back.
    let lost = 0;
    for (const [hex, message] of acknowledged) {
      const reply = await get(hex);
      if (reply.status !== 200 || reply.json<{ message: string }>().message !== message) lost += 1;
    }
    process.stdout.write(`acknowledged ${acknowledged.size} writes, lost ${lost}\n`);
    assert.equal(lost, 0);

    let waits = 0;
    for (const master of await cluster.masters()) {
      waits += Number(/cmdstat_wait:calls=(\d+)/.exec(await master.cli('info', 'commandstats'))?.[1] ?? 0);
    }
    assert.ok(waits > 0, 'the masters ran WAIT');

    assert.ok(
      server.logs.some((line) => line.replicas === 0 && typeof line.shard === 'string'),
      'the shard left without a replica is logged',
    );
    const metrics = (await request(`${server.url}/metrics`, { ca: server.ca, agent })).body;
    assert.equal(sample(metrics, 'digestd_worker_restarts_total'), 0);
  });
});
