import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { readFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPEATED_SIGNAL_GRACE_MS } from '../../../src/process/shutdown.js';
import { postMessage, startServer, type RunningServer } from '../../helpers/server.js';

/** How a request ended: an answer, or the error that ended it (a reset, for example). */
interface Outcome {
  status?: number;
  headers?: IncomingHttpHeaders;
  error?: string;
  /** The request went out on a keep-alive connection that had already carried an answer. */
  reusedSocket: boolean;
}

/**
 * A POST held in flight. Its headers go out with `Expect: 100-continue`, and the server's
 * 100 Continue shows it has parsed them, so the request is active on the server (not an idle
 * connection); the body follows only on finish(), so no answer can come before that.
 */
function heldPost(server: RunningServer, agent: Agent, message: string) {
  const body = JSON.stringify({ message });
  const outgoing = httpsRequest(`${server.url}/messages`, {
    method: 'POST',
    agent,
    ca: server.ca,
    headers: {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      expect: '100-continue',
    },
  });
  outgoing.setTimeout(60_000, () => outgoing.destroy(new Error('no answer within 60 s')));
  const answered = new Promise<Outcome>((resolve) => {
    outgoing.once('response', (incoming) => {
      incoming.resume();
      incoming.once('end', () =>
        resolve({
          status: incoming.statusCode,
          headers: incoming.headers,
          reusedSocket: outgoing.reusedSocket,
        }),
      );
      incoming.once('error', (error: NodeJS.ErrnoException) =>
        resolve({ error: error.code ?? error.message, reusedSocket: outgoing.reusedSocket }),
      );
    });
    outgoing.once('error', (error: NodeJS.ErrnoException) =>
      resolve({ error: error.code ?? error.message, reusedSocket: outgoing.reusedSocket }),
    );
  });
  const continued = new Promise<void>((resolve, reject) => {
    outgoing.once('continue', () => resolve());
    void answered.then((outcome) =>
      reject(new Error(`ended before 100 Continue: ${JSON.stringify(outcome)}`)),
    );
  });
  return {
    continued,
    answered,
    finish(): Promise<Outcome> {
      outgoing.end(body);
      return answered;
    },
  };
}

/** Makes `count` keep-alive connections, each having carried one answer, and leaves them idle. */
async function warmConnections(server: RunningServer, agent: Agent, count: number): Promise<void> {
  const replies = await Promise.all(
    Array.from({ length: count }, (_, index) => postMessage(server, `warm-up ${index}`, { agent })),
  );
  assert.ok(replies.every((reply) => reply.status === 201));
}

/** An idle keep-alive connection (one answer carried) and a promise of its close. */
async function idleConnection(server: RunningServer): Promise<{ closed: Promise<void>; agent: Agent }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: server.ca });
  let socket: Socket | undefined;
  agent.once('free', (free: Socket) => (socket = free));
  assert.equal((await postMessage(server, 'idle connection', { agent })).status, 201);
  assert.ok(socket !== undefined && !socket.destroyed, 'the connection stays open after its answer');
  const open = socket;
  return { agent, closed: new Promise((resolve) => open.once('close', () => resolve())) };
}

/** Resolves once `promise` settles, or rejects after `ms` naming `what`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Counts outcomes: answered 201 with Connection: close, answered otherwise, ended by an error. */
function tally(outcomes: Outcome[]) {
  const answered = outcomes.filter((outcome) => outcome.status !== undefined);
  return {
    answered: answered.length,
    created: answered.filter((outcome) => outcome.status === 201).length,
    closing: answered.filter((outcome) => outcome.headers?.connection === 'close').length,
    failed: outcomes.filter((outcome) => outcome.error !== undefined).map((outcome) => outcome.error),
  };
}

/** The primary's "worker exited" lines. */
function workerExits(server: RunningServer) {
  return server.logs.filter(
    (line) => line.pid === server.process.pid && String(line.msg).startsWith('worker exited'),
  );
}

/** Whether `pid` runs (a zombie counts as gone). */
async function alive(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return status !== '' && !/^State:\s+Z/m.test(status);
}

/** The pids of `pids` still running after at most `ms`. */
async function stillRunning(pids: number[], ms: number): Promise<number[]> {
  let left = pids;
  for (let waited = 0; left.length > 0 && waited < ms; waited += 50) {
    await sleep(50);
    left = (await Promise.all(left.map(async (pid) => ((await alive(pid)) ? [pid] : [])))).flat();
  }
  return left;
}

describe('shutdown', () => {
  it('SIGINT to the whole process group (Ctrl-C) drains once: every in-flight POST is answered, exit 0', async (t) => {
    const inFlight = 32;
    const server = await startServer({ args: ['--workers', '2'], detached: true });
    const agent = new Agent({ keepAlive: true, maxSockets: inFlight, ca: server.ca });
    try {
      await warmConnections(server, agent, inFlight);
      const idle = await idleConnection(server);
      const held = Array.from({ length: inFlight }, (_, index) =>
        heldPost(server, agent, `in flight ${index} ${Math.random()}`),
      );
      await within(Promise.all(held.map((each) => each.continued)), 15_000, 'every POST is read');

      process.kill(-server.process.pid!, 'SIGINT');
      // The drain closes idle keep-alive connections at once, while it waits for the busy ones.
      await within(idle.closed, 15_000, 'the idle keep-alive connection is closed by the server');
      const outcomes = await Promise.all(held.map((each) => each.finish()));
      const { code } = await within(server.exited, 30_000, 'digestd exits');
      const counts = tally(outcomes);
      t.diagnostic(
        `${inFlight} in flight: ${counts.created} answered 201 (${counts.closing} with Connection: close), ` +
          `${counts.failed.length} failed ${JSON.stringify(counts.failed)}; exit ${code}; ` +
          `worker exits ${JSON.stringify(workerExits(server).map((line) => line.code ?? line.signal))}`,
      );
      idle.agent.destroy();

      assert.ok(
        outcomes.every((outcome) => outcome.reusedSocket),
        'each POST rode a kept-alive connection',
      );
      assert.deepEqual(counts.failed, [], 'no in-flight request is reset');
      assert.equal(counts.created, inFlight);
      assert.equal(counts.closing, inFlight, 'each last answer closes its keep-alive connection');
      assert.ok(outcomes.every((outcome) => outcome.headers?.['x-content-type-options'] === 'nosniff'));
      assert.equal(code, 0);
      const exits = workerExits(server);
      assert.equal(exits.length, 2);
      assert.deepEqual(
        exits.map((line) => line.code),
        [0, 0],
        'each worker drains and exits 0',
      );
      assert.ok(!server.logs.some((line) => String(line.msg).startsWith('second signal')));
      assert.ok(server.logs.some((line) => line.msg === 'stopped' && line.pid === server.process.pid));
    } finally {
      agent.destroy();
      if (server.process.exitCode === null && server.process.signalCode === null) await server.killGroup();
    }
  });

  it('SIGTERM to one worker drains that worker, which exits 0 and is replaced', async (t) => {
    const inFlight = 8;
    const server = await startServer({ args: ['--workers', '1'] });
    const agent = new Agent({ keepAlive: true, maxSockets: inFlight, ca: server.ca });
    try {
      await warmConnections(server, agent, inFlight);
      const [victim] = server.workerPids();
      assert.ok(victim !== undefined);
      const held = Array.from({ length: inFlight }, (_, index) =>
        heldPost(server, agent, `in flight on one worker ${index} ${Math.random()}`),
      );
      await within(Promise.all(held.map((each) => each.continued)), 15_000, 'every POST is read');

      process.kill(victim, 'SIGTERM');
      await server.waitForLog((line) => line.pid === victim && line.msg === 'shutting down');
      const outcomes = await Promise.all(held.map((each) => each.finish()));
      const exited = await server.waitForLog(
        (line) => line.workerPid === victim && String(line.msg).startsWith('worker exited'),
      );
      const counts = tally(outcomes);
      t.diagnostic(
        `${inFlight} in flight: ${counts.created} answered 201 (${counts.closing} with Connection: close), ` +
          `${counts.failed.length} failed ${JSON.stringify(counts.failed)}; worker exit ${JSON.stringify(exited.code ?? exited.signal)}`,
      );
      assert.deepEqual(counts.failed, [], 'no in-flight request is reset');
      assert.equal(counts.created, inFlight);
      assert.equal(counts.closing, inFlight);
      assert.equal(exited.code, 0);

      await server.waitForLog(
        (line) =>
          line.msg === 'worker listening' && line.pid === server.process.pid && line.workerPid !== victim,
      );
      assert.equal((await postMessage(server, 'after the replacement', { agent: false })).status, 201);
    } finally {
      agent.destroy();
      assert.equal(await server.stop('SIGTERM', 30_000), 0);
    }
  });

  it('a second SIGINT to the primary a while after the first stops at once, without waiting for the drain', async (t) => {
    const server = await startServer({ args: ['--workers', '2', '--shutdown-timeout', '3600'] });
    const agent = new Agent({ keepAlive: true, maxSockets: 4, ca: server.ca });
    try {
      const workers = server.workerPids();
      // Bodies never sent: the drain would wait for these for the whole hour.
      const held = Array.from({ length: 4 }, (_, index) =>
        heldPost(server, agent, `never finished ${index}`),
      );
      await within(Promise.all(held.map((each) => each.continued)), 15_000, 'every POST is read');

      server.process.kill('SIGINT');
      await server.waitForLog((line) => line.pid === server.process.pid && line.msg === 'shutting down');
      // Sooner, it is taken for a copy of the first (npm start passes each signal on).
      await sleep(REPEATED_SIGNAL_GRACE_MS + 200);
      server.process.kill('SIGINT');
      const { code } = await within(server.exited, 15_000, 'digestd exits on the second signal');
      const outcomes = await within(
        Promise.all(held.map((each) => each.answered)),
        15_000,
        'the held requests end',
      );
      const left = await stillRunning(workers, 5000);
      t.diagnostic(`exit ${code}; held requests: ${JSON.stringify(outcomes.map((each) => each.error))}`);
      assert.equal(code, 1);
      assert.ok(server.logs.some((line) => line.msg === 'second signal: exiting at once'));
      assert.deepEqual(left, [], 'no worker is left running');
      assert.ok(outcomes.every((outcome) => outcome.status === undefined));
    } finally {
      agent.destroy();
      await server.stop('SIGKILL');
    }
  });

  it('SIGQUIT to the whole group (Ctrl-\\) stops at once, draining or not', async () => {
    const server = await startServer({
      args: ['--workers', '2', '--shutdown-timeout', '3600'],
      detached: true,
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 2, ca: server.ca });
    try {
      const workers = server.workerPids();
      const held = Array.from({ length: 2 }, (_, index) =>
        heldPost(server, agent, `never finished ${index}`),
      );
      await within(Promise.all(held.map((each) => each.continued)), 15_000, 'every POST is read');
      process.kill(-server.process.pid!, 'SIGQUIT');
      const { code, signal } = await within(server.exited, 15_000, 'digestd exits on SIGQUIT');
      assert.equal(code, 1, `exit status 1 (${signal})`);
      assert.ok(
        server.logs.some(
          (line) => line.pid === server.process.pid && line.msg === 'SIGQUIT: exiting at once',
        ),
      );
      assert.deepEqual(await stillRunning(workers, 5000), [], 'no worker is left running');
    } finally {
      agent.destroy();
      if (server.process.exitCode === null && server.process.signalCode === null) await server.killGroup();
    }
  });

  it('workers whose primary died stop serving', async () => {
    const server = await startServer({ args: ['--workers', '2'], detached: true });
    try {
      const workers = server.workerPids();
      assert.equal(workers.length, 2);
      process.kill(server.process.pid!, 'SIGKILL');
      await server.exited;
      const left = await stillRunning(workers, 10_000);
      assert.deepEqual(left, [], 'no orphaned worker keeps running');
      await assert.rejects(postMessage(server, 'nobody serves', { agent: false, timeoutMs: 5000 }), {
        code: 'ECONNREFUSED',
      });
    } finally {
      // Anything left in the group, should the assertion above fail.
      try {
        process.kill(-server.process.pid!, 'SIGKILL');
      } catch {
        // The group is empty: nothing was left.
      }
    }
  });
});
