import { freePort } from '../scripts/lib/free-port.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { request } from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DIGESTD_BIN = path.join(ROOT, 'bin', 'digestd');
const BASELINE = path.join(ROOT, 'bench', 'baseline.ts');
const PROBE = new URL('./memory-probe.mjs', import.meta.url).href;

/** A server under test, started by the harness. */
export interface BenchServer {
  name: 'digestd' | 'baseline';
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Whether the digestd under test knows `--workers`: `--digestd-bin` may name a build without it. */
export function digestdSupportsWorkers(bin = DIGESTD_BIN): boolean {
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  return /--workers\b/.test(help.stdout);
}

function get(url: string, ca: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const outgoing = request(url, { ca, rejectUnauthorized: ca !== undefined, agent: false }, (incoming) => {
      incoming.resume();
      incoming.on('end', () => resolve(incoming.statusCode ?? 0));
    });
    outgoing.on('error', reject);
    outgoing.setTimeout(2000, () => outgoing.destroy(new Error('timeout')));
    outgoing.end();
  });
}

/** Waits until `url` answers anything over TLS, trusting the CA certificate at `caPath`. */
export async function waitUntilAnswering(
  child: ChildProcess,
  url: string,
  caPath: string,
  errorFile: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const stderr = await readFile(errorFile, 'utf8').catch(() => '');
      throw new Error(
        `${url}: the server exited (${child.exitCode ?? child.signalCode}) before answering\n${stderr}`,
      );
    }
    const ca = await readFile(caPath, 'utf8').catch(() => undefined);
    if (ca !== undefined) {
      const status = await get(url, ca).catch(() => 0);
      if (status > 0) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url}: the server did not answer within ${timeoutMs / 1000} s`);
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
  const port = await freePort();
  const logFd = openSync(options.logFile, 'a');
  const errorFile = `${options.logFile}.stderr`;
  const errorFd = openSync(errorFile, 'a');
  const nodeArgs = ['--import', PROBE];
  if (options.cpuProfileDir) {
    await mkdir(options.cpuProfileDir, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir);
  }
  const serveArgs = [
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--data-dir',
    options.dataDir,
    '--log-level',
    'info',
  ];
  if (typeof options.workers === 'number') serveArgs.push('--workers', String(options.workers));
  serveArgs.push(...(options.extraArgs ?? []));
  const child = spawn(process.execPath, [...nodeArgs, options.bin ?? DIGESTD_BIN, ...serveArgs], {
    stdio: ['ignore', logFd, errorFd],
    env: { ...process.env, DIGESTD_BENCH_PROBE_DIR: options.probeDir },
  });
  closeSync(logFd);
  closeSync(errorFd);
  const url = `https://127.0.0.1:${port}`;
  const stop = stopper(child);
  try {
    await waitUntilAnswering(child, `${url}/healthz`, path.join(options.dataDir, 'tls', 'ca.pem'), errorFile);
  } catch (error) {
    await stop();
    throw error;
  }
  return { name: 'digestd', url, process: child, stop };
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
  const errorFd = openSync(options.errorFile, 'a');
  const child = spawn(
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
      cwd: ROOT,
      stdio: ['ignore', 'ignore', errorFd],
      env: { ...process.env, DIGESTD_BENCH_PROBE_DIR: options.probeDir },
    },
  );
  closeSync(errorFd);
  const url = `https://127.0.0.1:${port}`;
  const stop = stopper(child);
  try {
    await waitUntilAnswering(child, `${url}/messages/0`, options.caPath, options.errorFile);
  } catch (error) {
    await stop();
    throw error;
  }
  return { name: 'baseline', url, process: child, stop };
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

async function descendants(pid: number): Promise<number[]> {
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  const direct = children.split(' ').filter(Boolean).map(Number);
  const nested = await Promise.all(direct.map(descendants));
  return [pid, ...nested.flat()];
}

function statusField(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Reads /proc/<pid>/status of the tree and the probe's last heap figures. */
export async function sampleMemory(rootPid: number, probeDir: string): Promise<MemorySample> {
  const pids = await descendants(rootPid);
  let rssBytes = 0;
  let rssAnonBytes = 0;
  let heapUsedBytes: number | undefined;
  const probeFiles = new Set(await readdir(probeDir).catch(() => []));
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    rssBytes += statusField(status, 'VmRSS');
    rssAnonBytes += statusField(status, 'RssAnon');
    if (probeFiles.has(`${pid}.json`)) {
      const probe = await readFile(path.join(probeDir, `${pid}.json`), 'utf8')
        .then((text) => JSON.parse(text) as { heapUsed: number })
        .catch(() => undefined);
      if (probe) heapUsedBytes = (heapUsedBytes ?? 0) + probe.heapUsed;
    }
  }
  return { rssBytes, rssAnonBytes, heapUsedBytes, processes: pids.length };
}

/** CPU time in microseconds, split as the kernel accounts it. */
export interface CpuTime {
  user: number;
  /** In the kernel: system calls, and on loopback also the TCP work of delivering to the client. */
  system: number;
}

/**
 * CPU time used so far by a process and its descendants, from /proc/<pid>/stat. Unlike requests
 * per second, CPU per request barely moves when other programs compete for the machine, so it is
 * the steadier figure for before/after comparisons.
 */
export async function cpuTime(rootPid: number): Promise<CpuTime> {
  const microsPerTick = 1e6 / 100; // USER_HZ on Linux
  const total: CpuTime = { user: 0, system: 0 };
  for (const pid of await descendants(rootPid)) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total.user += Number(fields[11] ?? 0) * microsPerTick;
    total.system += Number(fields[12] ?? 0) * microsPerTick;
  }
  return total;
}
