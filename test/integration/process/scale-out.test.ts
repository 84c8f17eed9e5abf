import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf, formatDigest } from '../../../src/digest.js';
import { startRedisCluster, type RedisCluster } from '../../helpers/redis-cluster.js';
import { postMessage, request, startServer, type RunningServer } from '../../helpers/server.js';
import { redisBinariesAvailable, serviceSkip } from '../../helpers/services.js';

const skip = await serviceSkip(
  'redis-server',
  redisBinariesAvailable,
  'install redis-server and redis-cli to run the scale-out test (bash .ci/services does this)',
);

/** A request that takes longer than this is a hang: the store timeout is 3 s. */
const HANG_MS = 15_000;

interface Outcome {
  message: string;
  status: number | 'hang' | 'error';
  code?: string;
  errMsg?: string;
  retryAfter?: string;
  startedAt: number;
  endedAt: number;
}

async function post(node: RunningServer, message: string): Promise<Outcome> {
  const startedAt = Date.now();
  const timeout = sleep(HANG_MS).then(() => 'hang' as const);
  try {
    const reply = await Promise.race([postMessage(node, message), timeout]);
    if (reply === 'hang') return { message, status: 'hang', startedAt, endedAt: Date.now() };
    const body = reply.json<{ code?: string; err_msg?: string }>();
    return {
      message,
      status: reply.status,
      code: body.code,
      errMsg: body.err_msg,
      retryAfter: reply.headers['retry-after'],
      startedAt,
      endedAt: Date.now(),
    };
  } catch {
    return { message, status: 'error', startedAt, endedAt: Date.now() };
  }
}

async function readyz(node: RunningServer): Promise<number> {
  return (await request(`${node.url}/readyz`)).status;
}

describe('two digestd nodes over one Redis Cluster', { skip: skip ?? false, timeout: 300_000 }, () => {
  let cluster: RedisCluster;
  let nodes: RunningServer[];
  before(async () => {
    cluster = await startRedisCluster(3, 1);
    const args = ['--no-tls', '--store', cluster.url, '--store-timeout', '3000'];
    nodes = await Promise.all([startServer({ args }), startServer({ args })]);
  });
  after(async () => {
    await Promise.all((nodes ?? []).map((node) => node.stop()));
    await cluster?.stop();
  });

  it('serves a message posted to node A from node B at once', async () => {
    const [nodeA, nodeB] = nodes as [RunningServer, RunningServer];
    const message = `shared ${Math.random()}`;
    const posted = await postMessage(nodeA, message);
    assert.equal(posted.status, 201);
    const { digest } = posted.json<{ digest: string }>();
    const read = await request(`${nodeB.url}/messages/${digest}`);
    assert.equal(read.status, 200);
    assert.equal(read.json<{ message: string }>().message, message);
    assert.equal(await readyz(nodeB), 200);
  });

  it('keeps every acknowledged message through the failover of a master, answering 503 only meanwhile', async () => {
    const outcomes: Outcome[] = [];
    let running = true;
    let sequence = 0;
    const writer = async (worker: number) => {
      while (running) {
        const node = nodes[(sequence += 1) % nodes.length]!;
        outcomes.push(await post(node, `load ${worker} ${sequence} ${Math.random()}`));
      }
    };
    const writers = Array.from({ length: 6 }, (_, worker) => writer(worker));

    await sleep(1500);
    const [victim] = await cluster.masters();
    assert.ok(victim, 'a master to kill');
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    // Failover: the victim's replica is promoted. Then the victim comes back as its replica, so
    // writes can again be confirmed by one replica (WAIT 1).
    await cluster.waitHealthy(0);
    await victim.restart();
    await cluster.waitHealthy(1);
    for (;;) {
      const states = await Promise.all(nodes.map(readyz));
      if (states.every((status) => status === 200)) break;
      await sleep(200);
    }
    // Each node re-reads CLUSTER SLOTS every second; until it lists the rejoined replica, writes to
    // that shard are refused (no replica to confirm them).
    await sleep(2000);
    const recoveredAt = Date.now();
    await sleep(2000);
    running = false;
    await Promise.all(writers);

    const hangs = outcomes.filter((outcome) => outcome.status === 'hang' || outcome.status === 'error');
    assert.deepEqual(hangs, [], 'every request was answered');
    const unexpected = outcomes.filter((outcome) => outcome.status !== 201 && outcome.status !== 503);
    assert.deepEqual(unexpected, [], 'only 201 and 503');
    for (const refused of outcomes.filter((outcome) => outcome.status === 503)) {
      assert.equal(refused.code, 'STORE_UNAVAILABLE');
      assert.equal(refused.retryAfter, '1');
      const when = `${refused.startedAt - killedAt}..${refused.endedAt - killedAt} ms after the kill: ${refused.errMsg}`;
      assert.ok(refused.endedAt >= killedAt, `503 only after the master died (${when})`);
      assert.ok(refused.startedAt <= recoveredAt, `503 only until the cluster and nodes recovered (${when})`);
    }
    const before = outcomes.filter((outcome) => outcome.endedAt < killedAt);
    const afterwards = outcomes.filter((outcome) => outcome.startedAt > recoveredAt);
    assert.ok(before.length > 0 && afterwards.length > 0, 'load ran before and after the failover');
    assert.ok(before.every((outcome) => outcome.status === 201));
    assert.ok(afterwards.every((outcome) => outcome.status === 201));

    const acknowledged = outcomes.filter((outcome) => outcome.status === 201);
    const missing: string[] = [];
    for (const [index, outcome] of acknowledged.entries()) {
      const digest = formatDigest(digestOf(outcome.message));
      const url = `${nodes[index % nodes.length]!.url}/messages/${digest}`;
      // 503 means "try again" (a node's cluster client may still be settling); 404 means lost.
      let read = await request(url);
      for (let attempt = 0; read.status === 503 && attempt < 10; attempt += 1) {
        await sleep(300);
        read = await request(url);
      }
      if (read.status !== 200 || read.json<{ message: string }>().message !== outcome.message) {
        missing.push(`${outcome.message} (read ${read.status} ${read.body})`);
      }
    }
    assert.deepEqual(missing, [], `all ${acknowledged.length} acknowledged messages are readable`);
    process.stdout.write(
      `# scale-out: ${acknowledged.length} acknowledged, ${outcomes.length - acknowledged.length} answered 503 during failover\n`,
    );
  });
});
