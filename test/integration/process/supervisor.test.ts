import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  DIGESTD_BIN,
  postMessage,
  request,
  startServer,
  temporaryDirectory,
  type RunningServer,
} from '../../helpers/server.js';

const CRASH_FIXTURE = fileURLToPath(new URL('../fixtures/crash-worker-once.mjs', import.meta.url));

/** Runs `digestd serve` to completion, giving up after `timeoutMs`. */
function runToExit(args: string[], timeoutMs = 30_000) {
  return new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => {
    execFile(
      process.execPath,
      [DIGESTD_BIN, 'serve', '--host', '127.0.0.1', ...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Sends requests from `concurrency` loops until stopped; each outcome is recorded with its time. */
function loadGenerator(server: RunningServer, concurrency: number, newConnections: boolean) {
  const agent = new Agent({ keepAlive: true, ca: server.ca });
  const outcomes: { at: number; ok: boolean; error?: string }[] = [];
  let running = true;
  const loop = async (id: number) => {
    for (let index = 0; running; index++) {
      const startedAt = Date.now();
      try {
        const reply = await postMessage(server, `load ${id} ${index} ${Math.random()}`, {
          agent: newConnections ? false : agent,
          timeoutMs: 5000,
        });
        outcomes.push({ at: Date.now(), ok: reply.status === 201, error: String(reply.status) });
      } catch (error) {
        outcomes.push({
          at: Date.now(),
          ok: false,
          error: `${(error as Error).message} started ${startedAt}`,
        });
      }
    }
  };
  const loops = Array.from({ length: concurrency }, (_, id) => loop(id));
  return {
    outcomes,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

describe('supervisor', () => {
  it('replaces a SIGKILLed worker within seconds, logs the signal and answers throughout', async () => {
    const server = await startServer({ args: ['--workers', '2'] });
    const load = loadGenerator(server, 4, true);
    try {
      await sleep(500);
      const [victim] = server.workerPids();
      assert.ok(victim !== undefined);
      const killedAt = Date.now();
      process.kill(victim, 'SIGKILL');

      const exited = await server.waitForLog(
        (line) => line.workerPid === victim && String(line.msg).startsWith('worker exited'),
        5000,
      );
      assert.equal(exited.signal, 'SIGKILL');
      assert.match(String(exited.msg), /on SIGKILL/);
      await server.waitForLog((line) => String(line.msg).startsWith('restarting worker'), 5000);
      const replacement = await server.waitForLog(
        (line) => line.msg === 'worker listening' && line.slot === exited.slot && line.workerPid !== victim,
        30_000,
      );
      assert.notEqual(replacement.workerPid, victim);
      await sleep(500);
      await load.stop();

      assert.equal(server.workerPids().length, 2);
      // Only requests in flight on the killed worker's connections may fail: at most one per loop.
      const failures = load.outcomes.filter((outcome) => !outcome.ok);
      assert.ok(failures.length <= 4, `failed: ${JSON.stringify(failures)}`);
      assert.ok(load.outcomes.filter((outcome) => outcome.ok && outcome.at > killedAt).length > 10);
    } finally {
      await load.stop();
      assert.equal(await server.stop(), 0);
    }
  });

  for (const kind of ['exception', 'rejection'] as const) {
    it(`logs an uncaught ${kind} in a worker with its stack and replaces the worker`, async () => {
      const directory = await temporaryDirectory();
      const server = await startServer({
        args: ['--workers', '1'],
        env: {
          NODE_OPTIONS: `--import ${CRASH_FIXTURE}`,
          CRASH_ONCE_MARKER: path.join(directory, 'crashed'),
          CRASH_ONCE_KIND: kind,
        },
      });
      try {
        const fatal = await server.waitForLog((line) => line.level === 'fatal', 30_000);
        const error = fatal.err as { stack?: string };
        assert.match(String(error.stack), new RegExp(`test fixture: unhandled ${kind}|uncaught ${kind}`));
        assert.match(String(error.stack), /crash-worker-once\.mjs/);
        const exited = await server.waitForLog(
          (line) => line.workerPid === fatal.pid && String(line.msg).startsWith('worker exited'),
        );
        assert.equal(exited.code, 1);
        await server.waitForLog(
          (line) =>
            line.msg === 'worker listening' && line.workerPid !== fatal.pid && line.pid === exited.pid,
          30_000,
        );
        const health = await request(`${server.url}/healthz`, { ca: server.ca });
        assert.equal(health.status, 200);
      } finally {
        assert.equal(await server.stop(), 0);
      }
    });
  }

  it('exits 1 at once naming the address when the port is in use (no crash loop)', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      const result = await runToExit(['--port', String(port), '--data-dir', await temporaryDirectory()]);
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        `digestd: Cannot listen on 127.0.0.1:${port}: the address is already in use by another program (EADDRINUSE).\n`,
      );
    } finally {
      blocker.close();
    }
  });

  it('exits 2 naming the data directory when it is not a directory', async () => {
    const notADirectory = path.join(await temporaryDirectory(), 'file');
    await writeFile(notADirectory, 'not a directory');
    const result = await runToExit(['--port', '0', '--no-tls', '--data-dir', notADirectory]);
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `digestd: --data-dir: Cannot create the directory ${notADirectory}: ${notADirectory} is not a directory.\n`,
    );
  });

  it('exits 2 at once naming the store when its directory cannot be one, starting no worker', async () => {
    const directory = await temporaryDirectory();
    const notADirectory = path.join(directory, 'file');
    await writeFile(notADirectory, 'not a directory');
    const result = await runToExit([
      ...['--port', '0', '--no-tls', '--workers', '2'],
      ...['--data-dir', directory, '--store', `lmdb:${notADirectory}`],
    ]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, new RegExp(`^digestd: --store: cannot use ${notADirectory}: .+\\n$`));
    assert.ok(!result.stdout.includes('worker started'), 'no worker is started');
  });

  it('on SIGTERM under write load exits 0 and keeps every message answered 201', async () => {
    const server = await startServer({ args: ['--workers', '2'] });
    const agent = new Agent({ keepAlive: true, ca: server.ca });
    const acknowledged: { digest: string; message: string }[] = [];
    let running = true;
    const writer = async (id: number) => {
      for (let index = 0; running; index++) {
        const message = `before shutdown ${id} ${index} ${Math.random()}`;
        try {
          const reply = await postMessage(server, message, {
            agent: index % 2 === 0 ? agent : false,
            timeoutMs: 15_000,
          });
          if (reply.status === 201)
            acknowledged.push({ digest: reply.json<{ digest: string }>().digest, message });
          else if (reply.status !== 503) assert.fail(`unexpected ${reply.status} ${reply.body}`);
        } catch {
          // Refused or reset once the server stops accepting: not acknowledged, nothing promised.
          await sleep(20);
        }
      }
    };
    const writers = Array.from({ length: 6 }, (_, id) => writer(id));
    await sleep(1000);
    const code = await server.stop('SIGTERM');
    running = false;
    await Promise.all(writers);
    assert.equal(code, 0);
    agent.destroy();
    assert.ok(acknowledged.length > 10, `only ${acknowledged.length} writes were acknowledged`);
    assert.ok(server.logs.some((line) => line.msg === 'stopped' && line.pid === server.process.pid));

    const restarted = await startServer({ dataDir: server.dataDir, args: ['--workers', '1'] });
    try {
      const readAgent = new Agent({ keepAlive: true, ca: restarted.ca });
      for (const { digest, message } of acknowledged) {
        const read = await request(`${restarted.url}/messages/${digest}`, {
          ca: restarted.ca,
          agent: readAgent,
        });
        assert.equal(read.status, 200, `acknowledged ${digest} is missing`);
        assert.deepEqual(read.json(), { message });
      }
      readAgent.destroy();
    } finally {
      await restarted.stop();
    }
  });
});
