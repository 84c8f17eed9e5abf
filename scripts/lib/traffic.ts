/**
 * What the scripts do with a digestd process: start it through the harness as the leader of its
 * own process group (so that one kill reaches its workers too), send requests over one keep-alive
 * agent, and check that every acknowledged message is still there.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { Agent } from 'node:https';
import {
  startServer as startDigestd,
  type RunningServer,
  type StartOptions,
} from '../../test/harness/digestd.js';
import { request } from '../../test/harness/http.js';
import { sha256Hex } from '../../test/harness/sha256.js';

export { sha256Hex };
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A digestd process of a script, with the agent its requests share. */
export interface Server {
  digestd: RunningServer;
  port: number;
  agent: Agent;
}

export interface Reply {
  status: number;
  body: string;
}

export async function send(server: Server, method: string, url: string, body?: string): Promise<Reply> {
  const reply = await request(`${server.digestd.url}${url}`, {
    method,
    agent: server.agent,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body,
  });
  return { status: reply.status, body: reply.body };
}

/**
 * Starts `digestd serve` (log level warn) in its own process group, and waits until it is ready;
 * `options` go to the harness (a wrapper command, Node.js flags).
 */
export async function startServer(
  dataDir: string,
  serverArgs: string[],
  options: Pick<StartOptions, 'wrapper' | 'nodeArgs'> = {},
): Promise<Server> {
  const digestd = await startDigestd({
    ...options,
    dataDir,
    args: ['--log-level', 'warn', ...serverArgs],
    stdout: 'ignore',
    detached: true,
    timeoutMs: 30_000,
  });
  return {
    digestd,
    port: digestd.port,
    agent: new Agent({ keepAlive: true, maxSockets: 64, ca: digestd.ca }),
  };
}

/** SIGKILLs the whole process group, waits until every member is gone; returns how many there were. */
export async function killGroup(server: Server): Promise<number> {
  const members = await server.digestd.killGroup();
  server.agent.destroy();
  return members;
}

/** Whether the server process is still running. */
export function isRunning(server: Server): boolean {
  const child = server.digestd.process;
  return child.exitCode === null && child.signalCode === null;
}

/** How often a read answered 503 is asked again before it counts as lost. */
const READ_RETRIES = 50;

/** GETs every digest; returns how many are missing or differ (a 503 is asked again first). */
export async function countLost(
  server: Server,
  expected: Map<string, string>,
  concurrency = 32,
): Promise<number> {
  const entries = [...expected];
  let next = 0;
  let lost = 0;
  const reader = async () => {
    while (next < entries.length) {
      const [digest, message] = entries[next++]!;
      let reply = await send(server, 'GET', `/messages/${digest}`);
      // 503 is load shed on a busy machine, not an answer about the message: asked again, bounded.
      for (let retry = 0; reply.status === 503 && retry < READ_RETRIES; retry++) {
        await sleep(200);
        reply = await send(server, 'GET', `/messages/${digest}`);
      }
      if (reply.status !== 200 || (JSON.parse(reply.body) as { message?: string }).message !== message)
        lost++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, reader));
  return lost;
}

/** SIGTERMs the server and resolves with its exit code once it has exited. */
export async function stopServer(server: Server): Promise<number | null> {
  const code = await server.digestd.stop();
  server.agent.destroy();
  return code;
}

/** How writeUntilKilled writes and when it kills. */
export interface KillOptions {
  /** Concurrent writer connections. @default 32 */
  connections: number;
  /** Acknowledged writes to wait for before the kill window opens. @default 100 */
  minAcknowledged: number;
  /** The kill comes at a random moment up to this long after that. @default 1500 */
  killWindowMs: number;
}

function uniqueMessage(round: number, writer: number, sequence: number): string {
  const padding = 'x'.repeat(randomInt(0, 2000));
  return `round ${round} writer ${writer} #${sequence} ${randomUUID()} é😀 ${padding}`;
}

/** Writes until the server dies; returns what was acknowledged. */
export async function writeUntilKilled(server: Server, round: number, options: KillOptions) {
  const acknowledged = new Map<string, string>();
  let interrupted = 0;
  /** Answered 503 (overloaded): refused, not acknowledged. */
  let shed = 0;
  let wrongDigests = 0;
  let killing = false;
  let killedAfterMs = 0;
  let processesKilled = 0;

  const writer = async (index: number) => {
    for (let sequence = 0; ; sequence++) {
      const message = uniqueMessage(round, index, sequence);
      try {
        const reply = await send(server, 'POST', '/messages', JSON.stringify({ message }));
        // Shed load on a busy machine: not acknowledged, so nothing is owed; the writer goes on.
        if (reply.status === 503 && !killing) {
          shed++;
          await sleep(50);
          continue;
        }
        if (reply.status !== 201) throw new Error(`POST answered ${reply.status}: ${reply.body}`);
        const { digest } = JSON.parse(reply.body) as { digest: string };
        if (digest !== sha256Hex(message)) wrongDigests++;
        acknowledged.set(digest, message);
      } catch (error) {
        if (!killing) throw error;
        interrupted++;
        return;
      }
    }
  };

  const started = Date.now();
  const killer = (async () => {
    while (acknowledged.size < options.minAcknowledged) await sleep(5);
    await sleep(randomInt(0, options.killWindowMs + 1));
    killing = true;
    killedAfterMs = Date.now() - started;
    processesKilled = await killGroup(server);
  })();
  await Promise.all([killer, ...Array.from({ length: options.connections }, (_, index) => writer(index))]);
  return { acknowledged, interrupted, shed, wrongDigests, killedAfterMs, processesKilled };
}
