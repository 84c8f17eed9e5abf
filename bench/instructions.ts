/**
 * `npm run bench:instructions`: the instructions each server executes per request, counted by
 * valgrind's callgrind over a fixed number of requests, for the bare baseline (bench/baseline.ts),
 * a bare Fastify server (bench/fastify-baseline.ts) and digestd's request path
 * (bench/digestd-in-process.ts). Unlike requests per second, a count does not depend on what
 * else the machine is doing. Runs of one build still differ by a few percent (a garbage
 * collection falls in a run or not), hence the median of several. It leaves out the kernel's work
 * (TLS records' write(2), waking the client) and weighs every instruction alike; throughput
 * remains `npm run bench`'s job.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import autocannon from 'autocannon';
import { freePort } from '../test/harness/free-port.js';
import { loadTlsMaterial } from '../src/http/tls/material.js';
import { messagePath, runAutocannon, type Targets } from './load.js';
import { SCENARIOS, missDigests } from './scenarios.js';
import { stopper, waitUntilAnswering } from './servers.js';

/** The scenarios of bench/scenarios.ts this tool seeds for: small messages only. */
const SCENARIO_NAMES = ['get-hit', 'get-miss', 'post-new'] as const;
type ScenarioName = (typeof SCENARIO_NAMES)[number];

const HELP = `Usage: npm run bench:instructions -- [options]

  --requests N      requests per measured run (default 3000)
  --runs N          measured runs per scenario and server; the median is reported (default 3)
  --warmup N        unmeasured requests of each scenario right before its runs (default 15000)
  --connections N   concurrent keep-alive connections (default 16)
  --scenarios LIST  comma-separated subset of: ${SCENARIO_NAMES.join(', ')} (default all)
  --servers LIST    comma-separated subset of: baseline, fastify, digestd (default all)
  --out DIR         where the JSON results go (default bench/results)

Needs valgrind (apt-get install valgrind). Each server runs under callgrind, about 50 times slower
than natively; the defaults take about twenty minutes.
`;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);
const SEEDED = 1000;
/**
 * valgrind stalls a server for seconds at a time (translating code V8 just wrote); with
 * autocannon's default of 10 s a stall counts as a timeout and the reconnect is a TLS handshake,
 * which would weigh on the count as much as hundreds of requests.
 */
const ANSWER_TIMEOUT_SECONDS = 300;

type ServerName = 'baseline' | 'fastify' | 'digestd';

/** The command line of each server: its script and arguments besides --port. */
const SERVERS: Record<ServerName, (tls: { certPath: string; keyPath: string }, dataDir: string) => string[]> =
  {
    baseline: (tls) => ['bench/baseline.ts', '--cert', tls.certPath, '--key', tls.keyPath],
    fastify: (tls) => ['bench/fastify-baseline.ts', '--cert', tls.certPath, '--key', tls.keyPath],
    digestd: (_tls, dataDir) => ['bench/digestd-in-process.ts', '--data-dir', dataDir],
  };

/** One server's figures for one scenario. */
export interface InstructionResult {
  server: ServerName;
  scenario: ScenarioName;
  requests: number;
  /** Instructions per request of each run. */
  runs: number[];
  /** The median of the runs. */
  instructionsPerRequest: number;
}

/** Sends `amount` requests of a scenario and checks that each got the answer it should. */
async function load(
  url: string,
  scenario: ScenarioName,
  amount: number,
  connections: number,
  targets: Targets,
) {
  const plan = SCENARIOS.find((candidate) => candidate.name === scenario);
  if (plan === undefined) throw new Error(`no scenario ${scenario}`);
  const result = await runAutocannon({
    url,
    scenario: plan,
    targets,
    connections,
    seconds: 0,
    amount,
    timeoutSeconds: ANSWER_TIMEOUT_SECONDS,
  });
  if (result.requests !== amount || result.errors > 0) {
    throw new Error(
      `${url} ${scenario}: ${result.errors} of ${result.requests} answers were not ${plan.expected.join(' or ')} (${amount} sent)`,
    );
  }
}

/** Instructions callgrind counted in the dumps written since `before` (file names). */
async function countDumped(directory: string, before: Set<string>): Promise<number> {
  let total = 0;
  for (const name of await readdir(directory)) {
    if (!name.startsWith('callgrind.out.') || before.has(name)) continue;
    const totals = /^totals: (\d+)/m.exec(await readFile(path.join(directory, name), 'utf8'));
    total += Number(totals?.[1] ?? 0);
  }
  return total;
}

/** Starts one server under callgrind, with instrumentation off until a measured run. */
async function measureServer(
  server: ServerName,
  options: {
    scenarios: ScenarioName[];
    requests: number;
    runs: number;
    warmup: number;
    connections: number;
    workDir: string;
  },
): Promise<InstructionResult[]> {
  const directory = path.join(options.workDir, server);
  await mkdir(directory, { recursive: true });
  const tls = await loadTlsMaterial({ dataDir: directory });
  const port = await freePort();
  const errorFile = path.join(directory, 'stderr');
  const errorFd = openSync(errorFile, 'a');
  const logFd = openSync(path.join(directory, 'stdout'), 'a');
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      // V8 writes and rewrites machine code at run time.
      '--smc-check=all-non-file',
      `--callgrind-out-file=${path.join(directory, 'callgrind.out')}`,
      process.execPath,
      '--import',
      'tsx',
      ...SERVERS[server](tls, directory),
      '--port',
      String(port),
    ],
    { cwd: ROOT, stdio: ['ignore', logFd, errorFd] },
  );
  closeSync(errorFd);
  closeSync(logFd);
  const stop = stopper(child);
  const url = `https://127.0.0.1:${port}`;
  const control = (...args: string[]) => run('callgrind_control', [...args, String(child.pid)]);
  try {
    await waitUntilAnswering(child, `${url}/messages/${'0'.repeat(64)}`, {
      caPath: tls.caPath ?? tls.certPath,
      accepts: (status) => status > 0,
      timeoutMs: 300_000,
      errorFile,
    });
    const seeds = Array.from({ length: SEEDED }, (_, index) => `instructions seed ${index}`);
    let next = 0;
    await autocannon({
      url,
      connections: 8,
      timeout: ANSWER_TIMEOUT_SECONDS,
      amount: SEEDED,
      requests: [
        {
          method: 'POST',
          path: '/messages',
          headers: { 'content-type': 'application/json' },
          setupRequest: (request) => ({ ...request, body: JSON.stringify({ message: seeds[next++] }) }),
        },
      ],
    });
    const targets: Targets = {
      hits: { small: seeds.map(messagePath) },
      misses: missDigests(100).map((digest) => `/messages/${digest}`),
    };
    const results: InstructionResult[] = [];
    for (const scenario of options.scenarios) {
      // Right before the count, so that it starts on paths V8 has optimized for this scenario.
      await load(url, scenario, options.warmup, options.connections, targets);
      const runs: number[] = [];
      for (let index = 0; index < options.runs; index++) {
        const before = new Set(await readdir(directory));
        await control('--zero');
        await control('--instr=on');
        await load(url, scenario, options.requests, options.connections, targets);
        await control('--dump');
        await control('--instr=off');
        const instructions = await countDumped(directory, before);
        if (instructions === 0) throw new Error(`${server} ${scenario}: callgrind counted no instructions`);
        runs.push(Math.round(instructions / options.requests));
      }
      const median = [...runs].sort((a, b) => a - b)[Math.floor(runs.length / 2)] ?? 0;
      results.push({ server, scenario, requests: options.requests, runs, instructionsPerRequest: median });
      process.stderr.write(
        `${server} ${scenario}: ${runs.map((count) => count.toLocaleString('en-US')).join(', ')} instructions per request\n`,
      );
    }
    return results;
  } finally {
    await stop();
  }
}

/** The table printed at the end: per scenario, each server's count and the others' ratio to digestd's. */
function instructionTable(results: InstructionResult[]): string {
  const servers = [...new Set(results.map((result) => result.server))];
  const others = servers.filter((server) => server !== 'digestd');
  const columns = [
    'scenario',
    ...servers.map((server) => `${server} instr/req`),
    ...(servers.includes('digestd') ? others.map((server) => `${server} / digestd`) : []),
  ];
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const lines = [row(columns), row(columns.map(() => '---'))];
  for (const scenario of new Set(results.map((result) => result.scenario))) {
    const of = (server: ServerName) =>
      results.find((result) => result.server === server && result.scenario === scenario)
        ?.instructionsPerRequest;
    const digestd = of('digestd');
    const ratios =
      digestd === undefined ? [] : others.map((server) => `${((of(server) ?? NaN) / digestd).toFixed(2)}x`);
    lines.push(
      row([scenario, ...servers.map((server) => of(server)?.toLocaleString('en-US') ?? 'n/a'), ...ratios]),
    );
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      requests: { type: 'string', default: '3000' },
      runs: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '15000' },
      connections: { type: 'string', default: '16' },
      scenarios: { type: 'string', default: SCENARIO_NAMES.join(',') },
      servers: { type: 'string', default: 'baseline,fastify,digestd' },
      out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const scenarios = values.scenarios.split(',') as ScenarioName[];
  const servers = values.servers.split(',') as ServerName[];
  const unknown = [
    ...scenarios.filter((name) => !(SCENARIO_NAMES as readonly string[]).includes(name)),
    ...servers.filter((name) => !(name in SERVERS)),
  ];
  if (unknown.length > 0) throw new Error(`unknown scenario or server: ${unknown.join(', ')}\n\n${HELP}`);
  for (const tool of ['valgrind', 'callgrind_control']) {
    if (spawnSync(tool, ['--help'], { stdio: 'ignore' }).error) {
      throw new Error(`${tool} is not installed (apt-get install valgrind)`);
    }
  }
  const workDir = await mkdtemp(path.join(tmpdir(), 'digestd-instructions-'));
  try {
    const results: InstructionResult[] = [];
    for (const server of servers) {
      results.push(
        ...(await measureServer(server, {
          scenarios,
          requests: Number(values.requests),
          runs: Number(values.runs),
          warmup: Number(values.warmup),
          connections: Number(values.connections),
          workDir,
        })),
      );
    }
    await mkdir(values.out, { recursive: true });
    const file = path.join(values.out, `instructions-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(
      file,
      `${JSON.stringify({ node: process.version, connections: Number(values.connections), results }, null, 2)}\n`,
    );
    process.stdout.write(`\n${instructionTable(results)}\n\nresults: ${file}\n`);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
