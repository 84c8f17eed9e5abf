import { freePort } from './free-port.js';
/**
 * A digestd server process for the scripts: started as the leader of its own process group on a
 * free loopback port, so that one signal reaches its workers too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIGESTD_BIN = fileURLToPath(new URL('../../bin/digestd', import.meta.url));

export const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Server {
  child: ChildProcess;
  port: number;
  ca: string;
  agent: Agent;
  stderr: () => string;
}

export interface Reply {
  status: number;
  body: string;
}

export function send(server: Server, method: string, url: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        host: '127.0.0.1',
        port: server.port,
        path: url,
        method,
        agent: server.agent,
        servername: 'localhost',
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
      },
      (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
        incoming.on('error', reject);
        incoming.on('end', () =>
          resolve({ status: incoming.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

/** Starts `digestd serve` as the leader of its own process group, and waits until it answers. */
export async function startServer(dataDir: string, serverArgs: string[]): Promise<Server> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      DIGESTD_BIN,
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
      ...serverArgs,
    ],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  for (let attempt = 0; attempt < 600; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`digestd exited (${child.exitCode ?? child.signalCode}) before serving\n${stderr}`);
    }
    const ca = await readFile(path.join(dataDir, 'tls', 'ca.pem'), 'utf8').catch(() => undefined);
    if (ca !== undefined) {
      const agent = new Agent({ keepAlive: true, maxSockets: 64, ca });
      const server: Server = { child, port, ca, agent, stderr: () => stderr };
      const ready = await send(server, 'GET', '/readyz').catch(() => undefined);
      if (ready?.status === 200) return server;
      agent.destroy();
    }
    await sleep(50);
  }
  process.kill(-child.pid!, 'SIGKILL');
  throw new Error(`digestd did not become ready\n${stderr}`);
}

/** Pids in a process group (Linux /proc), to report how many processes one kill took down. */
export async function groupMembers(groupId: number): Promise<number> {
  let count = 0;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Fields after the parenthesised command name: state ppid pgrp ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === groupId) count++;
  }
  return count;
}

/** SIGKILLs the whole process group and waits until every member is gone. */
export async function killGroup(server: Server): Promise<number> {
  const groupId = server.child.pid!;
  const members = await groupMembers(groupId);
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  process.kill(-groupId, 'SIGKILL');
  await exited;
  for (;;) {
    try {
      process.kill(-groupId, 0);
    } catch {
      break;
    }
    await sleep(20);
  }
  server.agent.destroy();
  return members;
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

/** Resident memory of every process in a group, in bytes (Linux /proc). */
export async function groupRssBytes(groupId: number): Promise<number> {
  let total = 0;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) !== groupId) continue;
    const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    if (match) total += Number(match[1]) * 1024;
  }
  return total;
}

/** SIGTERMs the server and resolves with its exit code once it has exited. */
export async function stopServer(server: Server): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
  server.child.kill('SIGTERM');
  const code = await exited;
  server.agent.destroy();
  return code;
}
