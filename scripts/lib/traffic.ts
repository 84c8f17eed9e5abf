/**
 * What the scripts do with a digestd process: start it through the harness as the leader of its
 * own process group (so that one kill reaches its workers too), send requests over one keep-alive
 * agent, and check that every acknowledged message is still there.
 */
import { Agent } from 'node:https';
import { startServer as startDigestd, type RunningServer } from '../../test/harness/digestd.js';
import { request } from '../../test/harness/http.js';

export { sha256Hex } from '../../test/harness/sha256.js';
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

/** Starts `digestd serve` (log level warn) in its own process group, and waits until it is ready. */
export async function startServer(dataDir: string, serverArgs: string[]): Promise<Server> {
  const digestd = await startDigestd({
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

/** GETs every digest; returns how many are missing or differ. */
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
      const reply = await send(server, 'GET', `/messages/${digest}`);
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
