import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sample } from '../../helpers/metrics-text.js';
import { request, startServer, type RunningServer } from '../../helpers/server.js';

const SPIN_FIXTURE = fileURLToPath(new URL('../fixtures/spin-on-signal.mjs', import.meta.url));
const WORKER_TIMEOUT_MS = 1000;

/**
 * Stops one of the server's two workers with `stopIt` while a keep-alive client uses it, and
 * checks that the supervisor kills it for its silence, says why, counts it and replaces it.
 * Resolves with how long after the worker stopped answering the watchdog killed it.
 */
async function expectReplaced(server: RunningServer, stopIt: (pid: number) => void): Promise<number> {
  const [victim, other] = server.workerPids();
  assert.ok(victim !== undefined && other !== undefined);
  const stoppedAt = Date.now();
  stopIt(victim);
  const killed = await server.waitForLog(
    (line) => line.workerPid === victim && String(line.msg).includes('did not answer'),
    15_000,
  );
  const detectedMs = Number(new Date(String(killed.time))) - stoppedAt;
  assert.equal(killed.level, 'error');
  assert.equal(killed.workerTimeoutMs, WORKER_TIMEOUT_MS);
  assert.ok(Number(killed.silentForMs) > WORKER_TIMEOUT_MS);
  assert.match(String(killed.msg), /--worker-timeout 1000.*SIGKILL/);
  const exited = await server.waitForLog(
    (line) => line.workerPid === victim && String(line.msg).startsWith('worker exited'),
  );
  assert.equal(exited.signal, 'SIGKILL');
  await server.waitForLog(
    (line) =>
      line.msg === 'worker listening' &&
      line.pid === server.process.pid &&
      line.slot === exited.slot &&
      line.workerPid !== victim,
    15_000,
  );
  // The replacement and the other worker serve; the counter is in the primary's /metrics.
  const agent = new Agent({ keepAlive: false, ca: server.ca });
  try {
    for (let index = 0; index < 6; index++) {
      assert.equal((await request(`${server.url}/healthz`, { ca: server.ca, agent })).status, 200);
    }
    const metrics = await request(`${server.url}/metrics`, { ca: server.ca, agent });
    assert.equal(sample(metrics.body, 'digestd_worker_timeouts_total'), 1);
    assert.equal(sample(metrics.body, 'digestd_worker_restarts_total'), 1);
  } finally {
    agent.destroy();
  }
  return detectedMs;
}

describe('worker watchdog', () => {
  it('kills and replaces a worker stopped with SIGSTOP', async (t) => {
    const server = await startServer({
      args: ['--workers', '2', '--worker-timeout', String(WORKER_TIMEOUT_MS)],
    });
    try {
      const detectedMs = await expectReplaced(server, (pid) => process.kill(pid, 'SIGSTOP'));
      t.diagnostic(`SIGSTOP seen and the worker killed after ${detectedMs} ms`);
    } finally {
      assert.equal(await server.stop('SIGTERM', 30_000), 0);
    }
  });

  it('kills and replaces a worker stuck in an endless loop', async (t) => {
    const server = await startServer({
      args: ['--workers', '2', '--worker-timeout', String(WORKER_TIMEOUT_MS)],
      env: { NODE_OPTIONS: `--import ${SPIN_FIXTURE}` },
    });
    try {
      const detectedMs = await expectReplaced(server, (pid) => process.kill(pid, 'SIGUSR2'));
      t.diagnostic(`endless loop seen and the worker killed after ${detectedMs} ms`);
    } finally {
      assert.equal(await server.stop('SIGTERM', 30_000), 0);
    }
  });

  it('--worker-timeout 0 turns the watchdog off: a stopped worker is left alone', async () => {
    const server = await startServer({ args: ['--workers', '1', '--worker-timeout', '0'] });
    try {
      const [victim] = server.workerPids();
      assert.ok(victim !== undefined);
      process.kill(victim, 'SIGSTOP');
      await new Promise((resolve) => setTimeout(resolve, 2500));
      process.kill(victim, 'SIGCONT');
      assert.equal((await request(`${server.url}/healthz`, { ca: server.ca, agent: false })).status, 200);
      assert.deepEqual(server.workerPids(), [victim], 'the stopped worker was left alone');
      assert.ok(!server.logs.some((line) => String(line.msg).includes('did not answer')));
    } finally {
      assert.equal(await server.stop('SIGTERM', 30_000), 0);
    }
  });
});
