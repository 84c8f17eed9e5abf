import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { treeMemory } from '../../harness/proc.js';
import { sha256Hex } from '../../harness/sha256.js';
import { request, startServer, type RunningServer } from '../../helpers/server.js';

/**
 * One small lookup must not buy a huge answer: heavy lookups run against a real process while
 * another client's small GETs, on their own connection to the same (only) worker, keep answering.
 */

const MiB = 1024 * 1024;
const STORED = 40;
/** Distinct 1 MiB messages (ASCII, so bytes = characters). */
const messages = Array.from({ length: STORED }, (_, index) => `${index}:`.padEnd(MiB, 'x'));
const digests = messages.map((message) => sha256Hex(message));

describe('answers are bounded in bytes', () => {
  let server: RunningServer;
  let smallDigest: string;

  before(async () => {
    server = await startServer({ args: ['--no-tls', '--workers', '1'] });
    // Five 1 MiB messages a batch: within the body limit (six times --max-message-size).
    for (let start = 0; start < STORED; start += 5) {
      const stored = await request(`${server.url}/messages/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: messages.slice(start, start + 5) }),
      });
      assert.equal(stored.status, 201, stored.body);
    }
    const small = await request(`${server.url}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'small' }),
    });
    assert.equal(small.status, 201);
    smallDigest = small.json<{ digest: string }>().digest;
  });

  after(async () => {
    await server?.stop();
  });

  function lookup(names: readonly string[]) {
    return request(`${server.url}/messages/lookup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ digests: names }),
      agent: false,
      timeoutMs: 60_000,
    });
  }

  it('answers 413 ANSWER_TOO_LARGE past --max-answer-size and 200 within it, once per digest', async () => {
    const tooMany = await lookup(digests);
    assert.equal(tooMany.status, 413);
    const error = tooMany.json<{ code: string; err_msg: string }>();
    assert.equal(error.code, 'ANSWER_TOO_LARGE');
    assert.match(error.err_msg, /--max-answer-size/);

    const within = await lookup(digests.slice(0, 10));
    assert.equal(within.status, 200);
    const found = within.json<{ messages: Record<string, string | null> }>().messages;
    assert.deepEqual(Object.keys(found), digests.slice(0, 10));
    assert.equal(found[digests[3]!], messages[3]);

    // One 1 MiB digest named 1,000 times is one 1 MiB answer, read once.
    const repeated = await lookup(Array.from({ length: 1000 }, () => digests[0]!));
    assert.equal(repeated.status, 200);
    assert.deepEqual(repeated.json(), { messages: { [digests[0]!]: messages[0] } });
  });

  it("keeps another client's small GETs answering while heavy lookups run", async (t) => {
    const workersBefore = server.workerPids();
    assert.equal(workersBefore.length, 1);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const latencies: number[] = [];
    let heavyDone = false;
    let peakRss = 0;
    const sampler = setInterval(() => {
      void treeMemory(workersBefore[0]!).then((memory) => (peakRss = Math.max(peakRss, memory.rssBytes)));
    }, 50);
    const small = (async () => {
      // Bounded in count and time: stops when the heavy requests are done, or after 2,000 GETs.
      for (let count = 0; !heavyDone && count < 2000; count++) {
        const started = performance.now();
        const answer = await request(`${server.url}/messages/${smallDigest}`, { agent, timeoutMs: 60_000 });
        latencies.push(performance.now() - started);
        assert.equal(answer.status, 200);
      }
    })();
    const heavy = (async () => {
      for (let round = 0; round < 10; round++) {
        const all = await lookup(digests);
        assert.equal(all.status, 413);
        assert.equal(all.json<{ code: string }>().code, 'ANSWER_TOO_LARGE');
        const repeated = await lookup(Array.from({ length: 1000 }, () => digests[round]!));
        assert.equal(repeated.status, 200);
      }
    })();
    try {
      await heavy;
    } finally {
      heavyDone = true;
      await small;
      clearInterval(sampler);
      agent.destroy();
    }
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]!;
    t.diagnostic(
      `small GETs: ${latencies.length}, p50 ${latencies[Math.floor(latencies.length / 2)]!.toFixed(1)} ms, ` +
        `p99 ${p99.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms; worker peak RSS ${(peakRss / MiB).toFixed(0)} MiB`,
    );
    assert.ok(latencies.length >= 10, `only ${latencies.length} small GETs answered`);
    // Generous: the machine is shared; a lookup that reads a gigabyte held the loop for seconds.
    assert.ok(p99 < 1000, `small GETs' p99 was ${p99.toFixed(0)} ms`);
    assert.deepEqual(server.workerPids(), workersBefore, 'the worker was replaced');
  });
});
