import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DIGESTD_BIN, startServer, waitUntilAnswering } from '../test/harness/digestd.js';
import { freePort } from '../test/harness/free-port.js';
import { treeMemory } from '../test/harness/proc.js';

export { DIGESTD_BIN, waitUntilAnswering } from '../test/harness/digestd.js';
export { treeCpuTime as cpuTime, type CpuTime } from '../test/harness/proc.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
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
    await waitUntilAnswering(child, `${url}/messages/0`, {
      caPath: options.caPath,
      accepts: (status) => status > 0,
      timeoutMs: 60_000,
      errorFile: options.errorFile,
    });
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
