/**
 * The one way the tests, the benchmark and the scripts start a digestd process, wait until it
 * serves, and stop it.
 *
 * Readiness: when the harness reads the log (stdout, the default, or `logFile`), the process is
 * ready once it logs "digestd serving" (after every worker listens), and it may listen on port
 * 0. When stdout goes elsewhere (`stdout`), the harness picks a free port and polls GET /readyz
 * (or `readyPath`) until it answers 200, so that quiet log levels and access logs too large to read work too.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './free-port.js';
import { request } from './http.js';
import { processTree } from './proc.js';

/** The digestd executable of this checkout (runs the compiled dist/). */
export const DIGESTD_BIN = fileURLToPath(new URL('../../bin/digestd', import.meta.url));

/** Runs a digestd command to its end (killed after `timeoutMs`): exit code (0 on success), stdout, stderr. */
export async function runDigestd(
  args: string[],
  timeoutMs = 120_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [DIGESTD_BIN, ...args], {
      timeout: timeoutMs,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** A digestd process started by the harness. */
export interface RunningServer {
  process: ChildProcess;
  /** Base URL, e.g. https://127.0.0.1:40123 */
  url: string;
  port: number;
  dataDir: string;
  /** Every log line parsed as JSON so far (empty when stdout goes elsewhere). */
  logs: Record<string, unknown>[];
  /** Raw stderr text so far (empty when it goes to a file). */
  stderr: () => string;
  /** The local CA that signed the served certificate (undefined with --no-tls or the operator's files). */
  ca: string | undefined;
  /**
   * Sends `signal` (SIGTERM by default) and resolves with the exit code once the process has
   * exited; with `killAfterMs`, sends SIGKILL if it has not exited by then.
   */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<number | null>;
  /**
   * SIGKILLs the whole process group (needs `detached`) and resolves once every member is gone,
   * with how many processes the tree had.
   */
  killGroup(): Promise<number>;
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
  /** Extra command-line arguments after `serve` and the harness's own (host, port, data dir). */
  args?: readonly string[];
  /** Data directory; a fresh temporary one by default. */
  dataDir?: string;
  env?: Record<string, string | undefined>;
  /** How long to wait until it serves. @default 30000 (a loaded 2-core machine needs more than 15 s at times) */
  timeoutMs?: number;
  /**
   * Passes --log-file; the harness then reads the log from that file (the current one, not rotated
   * ones) instead of stdout.
   */
  logFile?: string;
  /**
   * Where stdout goes instead of being read: a file to append to (an access log under load is more
   * than the parent should parse) or 'ignore'. Readiness is then polled on GET /readyz.
   */
  stdout?: 'ignore' | { file: string };
  /** A file to append stderr to; by default it is kept for `stderr()` and error messages. */
  stderr?: string;
  /** What is polled when stdout goes elsewhere. @default '/readyz' (must answer 200) */
  readyPath?: string;
  /** Node.js flags before the executable (e.g. --import a probe, --cpu-prof). */
  nodeArgs?: readonly string[];
  /** The digestd executable. @default DIGESTD_BIN */
  bin?: string;
  /** Starts it as the leader of its own process group, so that one signal reaches its workers. */
  detached?: boolean;
  /**
   * A command that runs node with the remaining arguments, and must exec it so that the pid stays
   * node's (e.g. `unshare ... sh -c '...; exec "$@"' sh`).
   */
  wrapper?: readonly string[];
}

// A failed assertion or a crashed script must not leave servers behind.
const running = new Set<ChildProcess>();
process.once('exit', killAllServers);

/** SIGKILLs every digestd process the harness started that still runs. */
export function killAllServers(): void {
  for (const child of running) child.kill('SIGKILL');
}

/** Makes a fresh temporary directory for a test's or a run's data. */
export function temporaryDirectory(prefix = 'digestd-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** Whether the arguments and environment turn TLS off (then the server speaks plain HTTP). */
function tlsDisabled(args: readonly string[], env: Record<string, string | undefined>): boolean {
  return args.includes('--no-tls') || (env.DIGESTD_TLS ?? process.env.DIGESTD_TLS) === 'false';
}

/** The local CA that signs the certificate digestd generates (clients trust it, not the leaf). */
function localCaPath(dataDir: string): string {
  return path.join(dataDir, 'tls', 'ca.pem');
}

/**
 * Spawns `digestd serve` on 127.0.0.1 and resolves once it serves (see the module comment for
 * how readiness is decided).
 */
export async function startServer(options: StartOptions = {}): Promise<RunningServer> {
  const dataDir = options.dataDir ?? (await temporaryDirectory());
  const env = { ...process.env, ...options.env };
  const extraArgs = options.args ?? [];
  const tls = !tlsDisabled(extraArgs, env);
  const readsLog = options.stdout === undefined;
  const port = readsLog ? 0 : await freePort();
  const args = [
    ...(options.nodeArgs ?? []),
    options.bin ?? DIGESTD_BIN,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--data-dir',
    dataDir,
    ...(options.logFile === undefined ? [] : ['--log-file', options.logFile]),
    ...extraArgs,
  ];
  const files: number[] = [];
  const toFile = (file: string) => {
    const fd = openSync(file, 'a');
    files.push(fd);
    return fd;
  };
  let child: ChildProcess;
  try {
    const [command, ...wrapperArgs] = [...(options.wrapper ?? []), process.execPath];
    child = spawn(command, [...wrapperArgs, ...args], {
      env,
      stdio: [
        'ignore',
        options.stdout === undefined
          ? 'pipe'
          : options.stdout === 'ignore'
            ? 'ignore'
            : toFile(options.stdout.file),
        options.stderr === undefined ? 'pipe' : toFile(options.stderr),
      ],
      detached: options.detached ?? false,
    });
  } finally {
    for (const fd of files) closeSync(fd);
  }
  running.add(child);
  child.once('exit', () => running.delete(child));
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const timeoutMs = options.timeoutMs ?? 30000;
  const errorText = async () =>
    options.stderr === undefined ? stderr : await readFile(options.stderr, 'utf8').catch(() => '');

  let address: string;
  try {
    address = readsLog
      ? await listeningAddress(child, logs, options.logFile, exited, timeoutMs)
      : await answeringAddress(child, `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, {
          path: options.readyPath ?? '/readyz',
          caPath: tls ? localCaPath(dataDir) : undefined,
          timeoutMs,
        });
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}\n${await errorText()}`, { cause: error });
  }
  const url = new URL(address);
  const ca = tls ? await readFile(localCaPath(dataDir), 'utf8').catch(() => undefined) : undefined;
  const hasExited = () => child.exitCode !== null || child.signalCode !== null;
  return {
    process: child,
    url: address,
    port: Number(url.port),
    dataDir,
    logs,
    stderr: () => stderr,
    ca: url.protocol === 'https:' ? ca : undefined,
    exited,
    async waitForLog(match, waitMs = 15000) {
      const deadline = Date.now() + waitMs;
      for (;;) {
        const found = logs.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching log line within ${waitMs} ms`);
        if (hasExited()) throw new Error('digestd exited');
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
    async stop(signal: NodeJS.Signals = 'SIGTERM', killAfterMs?: number) {
      if (!hasExited()) child.kill(signal);
      const timer =
        killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      const { code } = await exited;
      clearTimeout(timer);
      return code;
    },
    async killGroup() {
      const groupId = child.pid!;
      const members = (await processTree(groupId)).length;
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
      return members;
    },
  };
}

/** Resolves with the address of the "digestd serving" line, read from stdout or `logFile`. */
function listeningAddress(
  child: ChildProcess,
  logs: Record<string, unknown>[],
  logFile: string | undefined,
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  timeoutMs: number,
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`digestd did not start within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onLine = (line: string) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (typeof entry.address === 'string' && String(entry.msg).startsWith('digestd serving')) {
          clearTimeout(timer);
          resolve(entry.address);
        }
      } catch {
        logs.push({ unparsed: line });
      }
    };
    if (logFile === undefined) createInterface({ input: child.stdout! }).on('line', onLine);
    else followFile(logFile, onLine, exited);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`digestd exited (${code ?? signal}) before listening`));
    });
  });
}

/** Options of waitUntilAnswering. */
export interface AnsweringOptions {
  /** The CA to verify the server with, read from this file once it exists; none for plain HTTP. */
  caPath?: string | undefined;
  /** Which status counts as serving. @default 200 only */
  accepts?: (status: number) => boolean;
  /** @default 15000 */
  timeoutMs?: number;
  /** A file the server writes its stderr to, quoted in the error when it exits first. */
  errorFile?: string;
}

/**
 * Polls `url` until it answers with an accepted status, for a server that does not report its
 * address (digestd with its output elsewhere, the benchmark's baselines, a server under valgrind).
 * Fails as soon as `child` exits.
 */
export async function waitUntilAnswering(
  child: ChildProcess,
  url: string,
  options: AnsweringOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 15000;
  const accepts = options.accepts ?? ((status: number) => status === 200);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const stderr =
        options.errorFile === undefined ? '' : await readFile(options.errorFile, 'utf8').catch(() => '');
      throw new Error(
        `${url}: the server exited (${child.exitCode ?? child.signalCode}) before answering\n${stderr}`,
      );
    }
    const ca =
      options.caPath === undefined ? undefined : await readFile(options.caPath, 'utf8').catch(() => null);
    if (ca !== null) {
      const reply = await request(url, { ca, agent: false, timeoutMs: 2000 }).catch(() => undefined);
      if (reply !== undefined && accepts(reply.status)) return;
    }
    await sleep(50);
  }
  throw new Error(`${url}: the server did not answer within ${timeoutMs / 1000} s`);
}

/** Waits until digestd at `base` answers GET `path` with 200; resolves with `base`. */
async function answeringAddress(
  child: ChildProcess,
  base: string,
  options: { path: string; caPath: string | undefined; timeoutMs: number },
): Promise<string> {
  await waitUntilAnswering(child, `${base}${options.path}`, options);
  return base;
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
