import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageNotFound } from '../src/errors.js';
import { IMMUTABLE_CACHE_CONTROL, securityHeaders } from '../src/http/answer.js';
import { DIGESTD_BIN, startServer, waitUntilAnswering } from '../test/harness/digestd.js';
import { freePort } from '../test/harness/free-port.js';
import { nginxTemporaryPaths } from '../test/harness/nginx.js';
import { request, type SimpleResponse } from '../test/harness/http.js';
import { treeMemory } from '../test/harness/proc.js';
import { messagePath } from './load.js';

export { DIGESTD_BIN, waitUntilAnswering } from '../test/harness/digestd.js';
export { treeCpuTime as cpuTime, type CpuTime } from '../test/harness/proc.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BASELINE = path.join(ROOT, 'bench', 'baseline.ts');
const PROBE = new URL('./memory-probe.mjs', import.meta.url).href;

/** A server under test, started by the harness. */
export interface BenchServer {
  name: 'digestd' | 'baseline' | 'nginx';
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Whether the digestd under test knows `--workers`: `--digestd-bin` may name a build without it. */
export function digestdSupportsWorkers(bin = DIGESTD_BIN): boolean {
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  return /--workers\b/.test(help.stdout);
}

/** Stops a server: SIGTERM, then SIGKILL after 15 s. */
export function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
}

/** Options of startDigestd. */
export interface DigestdOptions {
  dataDir: string;
  /** `--workers N`, or undefined to leave the server's default (or when it has no such flag). */
  workers: number | 'default' | undefined;
  /** Where the access log (stdout) goes. */
  logFile: string;
  /** Directory the memory probe writes to. */
  probeDir: string;
  /** Write a V8 CPU profile of each server process into this directory on exit. */
  cpuProfileDir?: string | undefined;
  /** The digestd executable. @default bin/digestd of this checkout */
  bin?: string;
  /** More arguments for `serve`, after the harness's own. */
  extraArgs?: readonly string[];
}

/** Starts `bin/digestd serve` as shipped: embedded LMDB store, access log at info. */
export async function startDigestd(options: DigestdOptions): Promise<BenchServer> {
  const nodeArgs = ['--import', PROBE];
  if (options.cpuProfileDir) {
    await mkdir(options.cpuProfileDir, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir);
  }
  const args = ['--log-level', 'info'];
  if (typeof options.workers === 'number') args.push('--workers', String(options.workers));
  args.push(...(options.extraArgs ?? []));
  const digestd = await startServer({
    dataDir: options.dataDir,
    args,
    env: { DIGESTD_BENCH_PROBE_DIR: options.probeDir },
    nodeArgs,
    bin: options.bin ?? DIGESTD_BIN,
    stdout: { file: options.logFile },
    stderr: `${options.logFile}.stderr`,
    // An older build under comparison (--digestd-bin) may predate /readyz.
    readyPath: '/healthz',
    timeoutMs: 60_000,
  });
  return {
    name: 'digestd',
    url: digestd.url,
    process: digestd.process,
    stop: async () => {
      await digestd.stop('SIGTERM', 15_000);
    },
  };
}

/** Starts the bare baseline with the same certificate, seeded with `seedFile`. */
export async function startBaseline(options: {
  certPath: string;
  keyPath: string;
  /** The CA that signed certPath. */
  caPath: string;
  seedFile: string;
  workers: number;
  probeDir: string;
  errorFile: string;
}): Promise<BenchServer> {
  const port = await freePort();
  return spawnServer(
    'baseline',
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      PROBE,
      BASELINE,
      '--port',
      String(port),
      '--cert',
      options.certPath,
      '--key',
      options.keyPath,
      '--seed',
      options.seedFile,
      '--workers',
      String(options.workers),
    ],
    {
      port,
      caPath: options.caPath,
      errorFile: options.errorFile,
      accepts: (status) => status > 0,
      cwd: ROOT,
      env: { ...process.env, DIGESTD_BENCH_PROBE_DIR: options.probeDir },
    },
  );
}

/**
 * Spawns a server that listens on `port` of 127.0.0.1 with stderr appended to `errorFile`, and
 * waits until GET /messages/0 answers with an accepted status; stops it if it never does.
 */
async function spawnServer(
  name: BenchServer['name'],
  command: string,
  args: readonly string[],
  options: {
    port: number;
    caPath: string;
    errorFile: string;
    accepts: (status: number) => boolean;
    cwd?: string;
    env?: NodeJS.ProcessEnv;
  },
): Promise<BenchServer> {
  const errorFd = openSync(options.errorFile, 'a');
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'ignore', errorFd],
  });
  closeSync(errorFd);
  const url = `https://127.0.0.1:${options.port}`;
  const stop = stopper(child);
  try {
    await waitUntilAnswering(child, `${url}/messages/0`, {
      caPath: options.caPath,
      accepts: options.accepts,
      timeoutMs: 60_000,
      errorFile: options.errorFile,
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { name, url, process: child, stop };
}

/** The nginx executable (on the PATH, else Debian's /usr/sbin/nginx), or undefined when there is none. */
export function nginxExecutable(): string | undefined {
  return ['nginx', '/usr/sbin/nginx'].find(
    (candidate) => spawnSync(candidate, ['-v'], { stdio: 'ignore' }).error === undefined,
  );
}

/**
 * Writes nginx's document root: for each message the file messages/<digest>, holding the body
 * digestd answers for it, so that nginx answers every GET of the scenarios with the same bytes.
 */
export async function writeNginxRoot(root: string, messages: readonly string[]): Promise<void> {
  await rm(root, { recursive: true, force: true });
  await mkdir(path.join(root, 'messages'), { recursive: true });
  // In batches, not a file descriptor per message at once.
  for (let start = 0; start < messages.length; start += 200) {
    await Promise.all(
      messages
        .slice(start, start + 200)
        .map((message) => writeFile(path.join(root, messagePath(message)), JSON.stringify({ message }))),
    );
  }
}

/** An nginx `add_header` line for each header, in single quotes (no value here holds one). */
const addHeaders = (headers: Record<string, string>, always = false) =>
  Object.entries(headers)
    .map(([name, value]) => `add_header ${name} '${value}'${always ? ' always' : ''};`)
    .join('\n      ');

/**
 * Starts nginx (not as a daemon) serving `root` (see writeNginxRoot) over TLS with the same
 * certificate as digestd: a stored message's file with the headers digestd's answer carries, and
 * for any other digest digestd's 404. An access line per request goes to a file in nginx's default
 * format, as digestd writes one per request. Its pid file, logs and temporary files stay in
 * `directory`.
 */
export async function startNginx(options: {
  executable: string;
  directory: string;
  root: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  workers: number;
  connections: number;
}): Promise<BenchServer> {
  const { directory } = options;
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true });
  const port = await freePort();
  const security = securityHeaders({ tls: true });
  const notFound = new MessageNotFound();
  const notFoundBody = JSON.stringify({ err_msg: notFound.message, code: notFound.code });
  const config = `daemon off;
worker_processes ${options.workers};
pid ${directory}/nginx.pid;
events { worker_connections ${Math.max(1024, options.connections + 64)}; }
http {
  # Buffered, as digestd's log writer gathers the lines that arrive while a write is under way.
  access_log ${directory}/access.log combined buffer=64k flush=1s;
  ${nginxTemporaryPaths(directory).join('\n  ')}
  server_tokens off;
  types {}
  default_type application/json;
  # The load generators' connections stay open for the whole run, as with the other servers.
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${options.certPath};
    ssl_certificate_key ${options.keyPath};
    root ${options.root};
    location /messages/ {
      ${addHeaders({ 'Cache-Control': IMMUTABLE_CACHE_CONTROL, Vary: 'Accept', ...security })}
      try_files $uri @miss;
    }
    location @miss {
      ${addHeaders({ 'Cache-Control': 'no-store', ...security }, true)}
      return 404 '${notFoundBody}';
    }
  }
}
`;
  const configFile = path.join(directory, 'nginx.conf');
  await writeFile(configFile, config);
  const errorFile = path.join(directory, 'error.log');
  return spawnServer('nginx', options.executable, ['-p', directory, '-c', configFile, '-e', errorFile], {
    port,
    caPath: options.caPath,
    errorFile,
    accepts: (status) => status === 404,
  });
}

/**
 * Fails unless `reference` answers each path with the status, content type and body `server`
 * answers: what a reference is compared on must be the same answers.
 */
export async function assertSameAnswers(
  server: BenchServer,
  reference: BenchServer,
  paths: readonly string[],
  caPath: string,
): Promise<void> {
  const ca = await readFile(caPath, 'utf8');
  const summary = (reply: SimpleResponse) =>
    `${reply.status} ${reply.headers['content-type']} ${reply.body.slice(0, 80)}`;
  for (const urlPath of paths) {
    const expected = await request(`${server.url}${urlPath}`, { ca, agent: false });
    const actual = await request(`${reference.url}${urlPath}`, { ca, agent: false });
    if (
      expected.status !== actual.status ||
      expected.headers['content-type'] !== actual.headers['content-type'] ||
      expected.body !== actual.body
    )
      throw new Error(
        `${reference.name} answers GET ${urlPath} otherwise than ${server.name}: ${summary(actual)} instead of ${summary(expected)}`,
      );
  }
}

/** Memory of a process tree at one moment. */
export interface MemorySample {
  /** Resident set, summed over the process and its descendants (includes LMDB's mapped pages). */
  rssBytes: number;
  /** Anonymous resident memory (heap, stacks, buffers; excludes file-backed pages such as the LMDB map). */
  rssAnonBytes: number;
  /** V8 heap in use, summed over the processes, from the memory probe; undefined when it has not reported. */
  heapUsedBytes: number | undefined;
  processes: number;
}

/** Reads /proc/<pid>/status of the tree and the probe's last heap figures. */
export async function sampleMemory(rootPid: number, probeDir: string): Promise<MemorySample> {
  const { rssBytes, rssAnonBytes, pids } = await treeMemory(rootPid);
  let heapUsedBytes: number | undefined;
  const probeFiles = new Set(await readdir(probeDir).catch(() => []));
  for (const pid of pids) {
    if (!probeFiles.has(`${pid}.json`)) continue;
    const probe = await readFile(path.join(probeDir, `${pid}.json`), 'utf8')
      .then((text) => JSON.parse(text) as { heapUsed: number })
      .catch(() => undefined);
    if (probe) heapUsedBytes = (heapUsedBytes ?? 0) + probe.heapUsed;
  }
  return { rssBytes, rssAnonBytes, heapUsedBytes, processes: pids.length };
}
