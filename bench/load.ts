import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { sha256Hex } from '../test/harness/sha256.js';
import { REPEATED_MESSAGE, newMessageBody, type Scenario } from './scenarios.js';

const WRK_SCRIPT = fileURLToPath(new URL('./wrk.lua', import.meta.url));

/** What one load run measured. */
export interface LoadResult {
  tool: 'autocannon' | 'wrk';
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Answers with a status the scenario does not expect, plus connection errors and timeouts. */
  errors: number;
  /** CPU time the server process tree spent per request during the run (set by the harness). */
  serverCpuMicrosPerRequest: number;
  /** Share of that CPU time spent in the kernel (0 to 1). */
  serverSystemShare: number;
  /** Answers per status code (autocannon only). */
  statusCodes?: Record<string, number>;
}

/** Where the GET steps draw their paths from. */
export interface Targets {
  /** Paths of stored messages per pool. */
  hits: Record<string, readonly string[]>;
  /** Paths of digests that are not stored. */
  misses: readonly string[];
}

/** Options of one load run. */
export interface LoadOptions {
  url: string;
  scenario: Scenario;
  targets: Targets;
  connections: number;
  seconds: number;
  /** A fixed number of requests instead of `seconds` of load (autocannon only). */
  amount?: number;
  /**
   * Seconds autocannon waits for an answer before it counts a timeout and reconnects.
   * @default autocannon's 10
   */
  timeoutSeconds?: number;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

/** Runs one scenario with autocannon (keep-alive connections over TLS). */
export async function runAutocannon(options: LoadOptions): Promise<LoadResult> {
  const prefix = `bench-${randomBytes(6).toString('hex')}`;
  let counter = 0;
  const repeatBody = JSON.stringify({ message: REPEATED_MESSAGE });
  const requests: autocannon.Request[] = options.scenario.steps.map((step) => {
    switch (step.kind) {
      case 'hit': {
        const paths = options.targets.hits[step.pool] ?? [];
        return { method: 'GET', setupRequest: (request) => ({ ...request, path: pick(paths) }) };
      }
      case 'miss':
        return {
          method: 'GET',
          setupRequest: (request) => ({ ...request, path: pick(options.targets.misses) }),
        };
      case 'new':
        return {
          method: 'POST',
          path: '/messages',
          headers: JSON_HEADERS,
          setupRequest: (request) => ({ ...request, body: newMessageBody(prefix, ++counter, step.bytes) }),
        };
      case 'repeat':
        return { method: 'POST', path: '/messages', headers: JSON_HEADERS, body: repeatBody };
    }
  });
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    ...(options.amount === undefined ? { duration: options.seconds } : { amount: options.amount }),
    ...(options.timeoutSeconds !== undefined && { timeout: options.timeoutSeconds }),
    requests,
  });
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {}))
    statusCodes[code] = count ?? 0;
  const answered = Object.values(statusCodes).reduce((sum, count) => sum + count, 0);
  const expected = options.scenario.expected.reduce((sum, code) => sum + (statusCodes[String(code)] ?? 0), 0);
  const requestsDone = result.requests.total;
  return {
    tool: 'autocannon',
    requests: requestsDone,
    seconds: result.duration,
    requestsPerSecond: requestsDone / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: answered - expected + result.errors + result.timeouts,
    statusCodes,
    serverCpuMicrosPerRequest: 0,
    serverSystemShare: 0,
  };
}

/** Whether wrk is on the PATH. */
export function wrkInstalled(): boolean {
  return spawnSync('wrk', ['--version'], { encoding: 'utf8' }).error === undefined;
}

/** Runs one scenario with wrk (two threads), driven by bench/wrk.lua. */
export async function runWrk(options: LoadOptions & { workDir: string }): Promise<LoadResult> {
  const plan = [`bench-${randomBytes(6).toString('hex')}`];
  const poolFiles = new Map<string, string>();
  const poolFile = async (name: string, paths: readonly string[]) => {
    const existing = poolFiles.get(name);
    if (existing) return existing;
    const file = path.join(options.workDir, `wrk-paths-${name}.txt`);
    await writeFile(file, `${paths.join('\n')}\n`);
    poolFiles.set(name, file);
    return file;
  };
  for (const step of options.scenario.steps) {
    if (step.kind === 'hit')
      plan.push(`H\t${await poolFile(step.pool, options.targets.hits[step.pool] ?? [])}`);
    else if (step.kind === 'miss') plan.push(`H\t${await poolFile('miss', options.targets.misses)}`);
    else if (step.kind === 'new') plan.push(`N\t${step.bytes}`);
    else plan.push(`R\t${JSON.stringify({ message: REPEATED_MESSAGE })}`);
  }
  const planFile = path.join(options.workDir, `wrk-plan-${options.scenario.name}.txt`);
  await writeFile(planFile, `${plan.join('\n')}\n`);
  const threads = Math.min(2, options.connections);
  const child = spawn(
    'wrk',
    [
      '-t',
      String(threads),
      '-c',
      String(options.connections),
      '-d',
      `${options.seconds}s`,
      '--timeout',
      '10s',
      '-s',
      WRK_SCRIPT,
      options.url,
    ],
    { env: { ...process.env, BENCH_PLAN: planFile }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const line = /BENCH_RESULT (\{.*\})/.exec(output)?.[1];
  if (code !== 0 || line === undefined) throw new Error(`wrk failed (${code}):\n${output}`);
  const summary = JSON.parse(line) as Record<string, number>;
  const seconds = (summary.durationUs ?? 0) / 1e6;
  const requests = summary.requests ?? 0;
  // wrk counts every answer outside 2xx/3xx as a status error: that is every answer of get-miss.
  const statusErrors = options.scenario.expected.every((status) => status >= 400) ? 0 : (summary.status ?? 0);
  return {
    tool: 'wrk',
    requests,
    seconds,
    requestsPerSecond: requests / seconds,
    p50Ms: (summary.p50Us ?? 0) / 1000,
    p99Ms: (summary.p99Us ?? 0) / 1000,
    errors:
      statusErrors +
      (summary.connect ?? 0) +
      (summary.read ?? 0) +
      (summary.write ?? 0) +
      (summary.timeout ?? 0),
    serverCpuMicrosPerRequest: 0,
    serverSystemShare: 0,
  };
}

/** The path of a message's digest, for the GET pools. */
export function messagePath(message: string): string {
  return `/messages/${sha256Hex(message)}`;
}
