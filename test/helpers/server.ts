import { after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** The digestd executable of this checkout (runs the compiled dist/). */
export const DIGESTD_BIN = fileURLToPath(new URL('../../bin/digestd', import.meta.url));

/** A digestd process started by a test. */
export interface RunningServer {
  process: ChildProcess;
  /** Base URL, e.g. https://127.0.0.1:40123 */
  url: string;
  port: number;
  dataDir: string;
  /** Every stdout line parsed as JSON so far (the structured log). */
  logs: Record<string, unknown>[];
  /** Raw stderr text so far. */
  stderr: () => string;
  /** The local CA that signed the served certificate (undefined with --no-tls or the operator's files). */
  ca: string | undefined;
  /** Sends SIGTERM and resolves with the exit code once the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code and signal once the process exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line (already seen or to come) that `match` accepts. */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Pids of the workers that listen now, from the primary's lifecycle lines. */
  workerPids(): number[];
}

/** Options for startServer. */
export interface StartOptions {
  /** Extra command-line arguments after `serve`. */
  args?: string[];
  /** Data directory; a fresh temporary one by default. */
  dataDir?: string;
  env?: Record<string, string>;
  /** How long to wait for the listening line. @default 15000 */
  timeoutMs?: number;
  /**
   * Passes --log-file; the helper then reads the log from that file (the current one, not rotated
   * ones) instead of stdout.
   */
  logFile?: string;
}

// A failed assertion must not leave servers behind that keep the test process alive.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
// A test that fails before stopping its server would otherwise keep the test file running for ever:
// at the end of each test file, whatever is still running is killed.
after(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** Makes a fresh temporary directory for a test's data. */
export function temporaryDirectory(prefix = 'digestd-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/**
 * Spawns `digestd serve` on 127.0.0.1 and a free port, and resolves once it logs that it listens.
 */
export async function startServer(options: StartOptions = {}): Promise<RunningServer> {
  const dataDir = options.dataDir ?? (await temporaryDirectory());
  const args = [
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--data-dir',
    dataDir,
    ...(options.logFile === undefined ? [] : ['--log-file', options.logFile]),
    ...(options.args ?? []),
  ];
  const child = spawn(process.execPath, [DIGESTD_BIN, ...args], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`digestd did not start within ${options.timeoutMs ?? 15000} ms\n${stderr}`));
    }, options.timeoutMs ?? 15000);
    const onLine = (line: string) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (typeof entry.address === 'string' && String(entry.msg).startsWith('digestd listening')) {
          clearTimeout(timer);
          resolve(entry.address);
        }
      } catch {
        logs.push({ unparsed: line });
      }
    };
    if (options.logFile === undefined) createInterface({ input: child.stdout }).on('line', onLine);
    else followFile(options.logFile, onLine, exited);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`digestd exited (${code ?? signal}) before listening\n${stderr}`));
    });
  });
  const url = new URL(address);
  const tls = url.protocol === 'https:';
  return {
    process: child,
    url: address,
    port: Number(url.port),
    dataDir,
    logs,
    stderr: () => stderr,
    ca: tls ? await readFile(path.join(dataDir, 'tls', 'ca.pem'), 'utf8').catch(() => undefined) : undefined,
    exited,
    async waitForLog(match, timeoutMs = 15000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = logs.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms`);
        if (child.exitCode !== null || child.signalCode !== null) throw new Error('digestd exited');
        await sleep(50);
      }
    },
    workerPids() {
      const live = new Set<number>();
      for (const line of logs) {
        if (typeof line.workerPid !== 'number' || line.pid !== child.pid) continue;
        if (line.msg === 'worker listening') live.add(line.workerPid);
        else if (String(line.msg).startsWith('worker exited')) live.delete(line.workerPid);
      }
      return [...live];
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return (await exited).code;
    },
  };
}

/** Calls `onLine` for every line appended to `file` (polling; it may not exist yet) until `until`. */
function followFile(file: string, onLine: (line: string) => void, until: Promise<unknown>): void {
  let offset = 0;
  let partial = '';
  let inode: number | undefined;
  let done = false;
  void until.then(() => (done = true));
  const poll = async () => {
    while (!done) {
      const read = await readWithInode(file);
      if (read !== undefined) {
        // Rotated or reopened: a new file (another inode) starts over. A size check alone misses a
        // new file that has already grown past the old offset.
        if (read.ino !== inode || read.content.length < offset) {
          if (inode !== undefined) partial = '';
          offset = 0;
          inode = read.ino;
        }
        const text = partial + read.content.subarray(offset).toString('utf8');
        offset = read.content.length;
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line !== '') onLine(line);
      }
      await sleep(100);
    }
  };
  void poll();
}

/** A file's content and inode, read through one handle; undefined while it cannot be read. */
async function readWithInode(file: string): Promise<{ content: Buffer; ino: number } | undefined> {
  const handle = await open(file).catch(() => undefined);
  if (handle === undefined) return undefined;
  try {
    const [content, stats] = await Promise.all([handle.readFile(), handle.stat()]);
    return { content, ino: stats.ino };
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => {});
  }
}

/** A reply read whole. */
export interface SimpleResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json<T = unknown>(): T;
}

/** Options for request(). */
export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** CA certificate to trust (the server's generated one). */
  ca?: string | undefined;
  /** Server name for TLS verification. @default the URL's host */
  servername?: string;
  agent?: import('node:http').Agent | false;
  /** Fail the request when no reply came within this many ms. @default 30000 */
  timeoutMs?: number;
}

/** One HTTP(S) request that verifies the server certificate against `ca`. */
export function request(url: string, options: RequestOptions = {}): Promise<SimpleResponse> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = send(
      target,
      {
        method: options.method ?? 'GET',
        headers: options.headers,
        ca: options.ca,
        servername: options.servername,
        agent: options.agent,
      },
      (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
        incoming.on('error', reject);
        incoming.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: incoming.statusCode ?? 0,
            headers: incoming.headers,
            body,
            json: <T>() => JSON.parse(body) as T,
          });
        });
      },
    );
    outgoing.setTimeout(options.timeoutMs ?? 30_000, () =>
      outgoing.destroy(new Error(`no reply within ${options.timeoutMs ?? 30_000} ms`)),
    );
    outgoing.on('error', reject);
    outgoing.end(options.body);
  });
}

/** POSTs {"message": message} as JSON. */
export function postMessage(server: RunningServer, message: string, extra: RequestOptions = {}) {
  return request(`${server.url}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message }),
    ca: server.ca,
    ...extra,
  });
}
