import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { processTree } from '../../harness/proc.js';
import { temporaryDirectory } from '../../helpers/server.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ROUNDS = 20;

/** `npm start` as a terminal runs it: the leader of its own process group, with digestd under it. */
interface NpmStart {
  npm: ChildProcess;
  url: string;
  ca: string;
  lines: () => Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function npmStart(): Promise<NpmStart> {
  const dataDir = await temporaryDirectory();
  const npm = spawn(
    'npm',
    ['start', '--', '--host', '127.0.0.1', '--port', '0', '--workers', '2', '--data-dir', dataDir],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    npm.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let output = '';
  npm.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  npm.stderr.resume();
  const lines = () =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  for (let waited = 0; !output.includes('digestd serving') && waited < 600; waited++) await sleep(100);
  const listening = lines().find((line) => String(line.msg).startsWith('digestd serving'));
  if (listening === undefined) {
    process.kill(-npm.pid!, 'SIGKILL');
    throw new Error(`digestd did not start under npm:\n${output}`);
  }
  const ca = await readFile(path.join(dataDir, 'tls', 'ca.pem'), 'utf8');
  return { npm, url: String(listening.address), ca, lines, exited };
}

/** How each request of the write load ended. */
interface Outcome {
  status?: number;
  /** The error code that ended it, or the body of an answer other than 201. */
  error?: string;
  /** When it ended, whether it went out on a connection that had carried an answer already, and when that connection was opened. */
  at?: number;
  reused?: boolean;
  connectedAt?: number;
}

/**
 * POSTs from `concurrency` loops over keep-alive connections until `stopped` resolves or the
 * server refuses connections (it has stopped listening: nothing was sent, so nothing is lost).
 */
function writeLoad(target: { url: string; ca: string }, concurrency: number, stopped: Promise<unknown>) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, ca: target.ca });
  const outcomes: Outcome[] = [];
  let done = false;
  void stopped.then(() => (done = true));
  const post = (message: string) =>
    new Promise<Outcome>((resolve) => {
      const body = JSON.stringify({ message });
      const outgoing = request(`${target.url}/messages`, {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      });
      let connectedAt: number | undefined;
      outgoing.once('socket', (socket) => socket.once('connect', () => (connectedAt = Date.now())));
      const failed = (error: NodeJS.ErrnoException) =>
        resolve({
          error: error.code ?? error.message,
          at: Date.now(),
          reused: outgoing.reusedSocket,
          connectedAt,
        });
      outgoing.setTimeout(20_000, () => outgoing.destroy(new Error('no answer within 20 s')));
      outgoing.once('response', (incoming) => {
        let text = '';
        incoming.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        incoming.once('end', () =>
          resolve(
            incoming.statusCode === 201 ? { status: 201 } : { status: incoming.statusCode, error: text },
          ),
        );
        incoming.once('error', failed);
      });
      outgoing.once('error', failed);
      outgoing.end(body);
    });
  const loop = async (id: number) => {
    for (let index = 0; !done; index++) {
      const outcome = await post(`stop load ${id} ${index} ${Math.random()}`);
      if (outcome.error === 'ECONNREFUSED') return;
      outcomes.push(outcome);
    }
  };
  const loops = Promise.all(Array.from({ length: concurrency }, (_, id) => loop(id)));
  return {
    outcomes,
    async finished() {
      await loops;
      agent.destroy();
    },
  };
}

/** Whether `pid` runs (a zombie counts as gone). */
async function alive(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return status !== '' && !/^State:\s+Z/m.test(status);
}

describe('one stop, however the signal arrives', () => {
  it(`Ctrl-C or SIGTERM to the whole group under npm start, under write load, ${ROUNDS} rounds: one drain, nothing reset, exit 0`, async (t) => {
    const totals = { answered: 0, afterSignal: 0, failed: [] as string[] };
    for (let round = 0; round < ROUNDS; round++) {
      const signal = round % 2 === 0 ? 'SIGINT' : 'SIGTERM';
      const started = await npmStart();
      const tree = await processTree(started.npm.pid!);
      try {
        const load = writeLoad(started, 8, started.exited);
        // Under way on every connection, then the signal lands in the middle of it.
        for (let waited = 0; load.outcomes.length < 40 && waited < 200; waited++) await sleep(25);
        const before = load.outcomes.length;
        const signalledAt = Date.now();
        process.kill(-started.npm.pid!, signal);
        const { code, signal: killedBy } = await started.exited;
        await load.finished();

        const failed = load.outcomes.filter((outcome) => outcome.status !== 201);
        totals.answered += load.outcomes.length;
        totals.afterSignal += load.outcomes.length - before;
        totals.failed.push(...failed.map((outcome) => `round ${round}: ${outcome.error ?? outcome.status}`));
        const lines = started.lines();
        const primary = lines.find((line) => String(line.msg).startsWith('digestd serving'))?.pid;
        assert.deepEqual(
          failed,
          [],
          `round ${round} (${signal}, at ${signalledAt}): every POST sent is answered 201\n${lines.map((line) => JSON.stringify(line)).join('\n')}`,
        );
        assert.equal(code, 0, `round ${round} (${signal}): npm exits 0 (${killedBy})`);
        assert.ok(
          !lines.some((line) => String(line.msg).includes('exiting at once')),
          `round ${round}: npm's copy of the signal is not taken for an operator insisting`,
        );
        assert.equal(
          lines.filter((line) => line.msg === 'shutting down' && line.pid === primary).length,
          1,
          `round ${round}: one drain`,
        );
        assert.ok(lines.some((line) => line.msg === 'stopped' && line.pid === primary));
        const exits = lines.filter(
          (line) => line.pid === primary && String(line.msg).startsWith('worker exited'),
        );
        assert.deepEqual(
          exits.map((line) => line.code),
          [0, 0],
          `round ${round}: each worker drains and exits 0`,
        );
        const left = (await Promise.all(tree.map(async (pid) => ((await alive(pid)) ? [pid] : [])))).flat();
        assert.deepEqual(left, [], `round ${round}: nothing is left running`);
      } finally {
        try {
          process.kill(-started.npm.pid!, 'SIGKILL');
        } catch {
          // The group is gone, as it should be.
        }
      }
    }
    t.diagnostic(
      `${ROUNDS} rounds: ${totals.answered} POSTs answered, ${totals.afterSignal} of them after the signal; ` +
        `failed: ${JSON.stringify(totals.failed)}`,
    );
  });
});
