/**
 * `npm run bench`: measures digestd as shipped (bin/digestd serve, embedded LMDB, access log at
 * info) against a bare node:https baseline (bench/baseline.ts) and, for the GET scenarios, nginx
 * serving the same answers from static files, in the same run, alternating between them, and
 * reports medians. See `npm run bench -- --help`.
 */
import { cpus, availableParallelism, loadavg, totalmem } from 'node:os';
import { chmod, copyFile, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { messagePath, runAutocannon, runWrk, wrkInstalled, type LoadResult, type Targets } from './load.js';
import { preload } from './preload.js';
import {
  columnLegend,
  markdownTable,
  percent,
  summarize,
  throughputChart,
  type CaseResult,
  type MemoryPeak,
} from './report.js';
import { SCENARIOS, makePools, missDigests, readsOnly, type Scenario } from './scenarios.js';
import {
  DIGESTD_BIN,
  assertSameAnswers,
  cpuTime,
  digestdSupportsWorkers,
  nginxExecutable,
  sampleMemory,
  startBaseline,
  startDigestd,
  startNginx,
  writeNginxRoot,
  type BenchServer,
} from './servers.js';

/** The scenarios and worker settings of --quick: one GET, one durable POST and the mix. */
const QUICK_SCENARIOS = ['get-hit', 'post-new', 'mix-90-10'];
const QUICK_WORKERS = 'default';

const scenarioList = SCENARIOS.map(
  (scenario) => `                        ${scenario.name.padEnd(12)}${scenario.description}`,
).join('\n');

const HELP = `Usage: npm run bench -- [options]

Measures digestd (this checkout, built first) against a bare node:https baseline and, for GETs,
nginx serving the same answers, over TLS keep-alive; prints a table of medians and writes JSON
results and an SVG chart.

  --quick             a first look in under a minute: ${QUICK_SCENARIOS.join(', ')}; workers
                      ${QUICK_WORKERS}; one 2 s run per server, no warm-up (options below still apply)
  --duration S        seconds per measured run (default 5; --quick: 2)
  --warmup S          seconds of unmeasured load per scenario and server first (default 1; --quick: 0)
  --runs N            measured runs per scenario and server, alternating servers (default 3; --quick: 1)
  --connections N     concurrent keep-alive connections (default 64)
  --scenarios LIST    comma-separated subset (default: all; --quick: ${QUICK_SCENARIOS.join(',')}):
${scenarioList}
  --workers LIST      comma-separated worker settings: numbers and/or "default", one per CPU
                      (default "1,default"; --quick: "${QUICK_WORKERS}"); ignored, with a note, when
                      this digestd has no --workers flag
  --preload LIST      store sizes to measure at, e.g. 1e4,1e6,1e7 (default 10000): messages are
                      written straight into the LMDB store before the server starts
  --tool NAME         wrk, autocannon, or both (default: wrk when installed, else autocannon;
                      wrk, in C, leaves more of the machine to the servers)
  --no-baseline       leave out the bare node:https baseline
  --no-nginx          leave out the nginx reference (static files with the same answers, GET
                      scenarios only; left out with a note when nginx is not installed)
  --out DIR           where the JSON results go (default bench/results)
  --chart FILE        where the SVG chart goes (default next to the JSON)
  --cpu-prof DIR      write V8 CPU profiles of the digestd processes into DIR
  --digestd-bin FILE  the digestd executable to measure (default bin/digestd of this checkout)
  --digestd-args ARGS extra arguments for digestd serve, space-separated: --digestd-args='--log-level warn'
  --no-build          measure this checkout's dist/ as it is, without npm run build first
  --help              this text
`;

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface WorkerSetting {
  label: string;
  /** The --workers value passed to digestd, or undefined for none. */
  flag: number | 'default' | undefined;
  /** Processes the baseline forks to match. */
  baselineWorkers: number;
}

function parseCount(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || !Number.isInteger(value))
    throw new Error(`${name}: expected a whole number, got "${text}"`);
  return value;
}

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      runs: { type: 'string' },
      connections: { type: 'string', default: '64' },
      scenarios: { type: 'string' },
      workers: { type: 'string' },
      preload: { type: 'string', default: '10000' },
      tool: { type: 'string' },
      'no-baseline': { type: 'boolean', default: false },
      'no-nginx': { type: 'boolean', default: false },
      out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
      chart: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'digestd-bin': { type: 'string', default: DIGESTD_BIN },
      'digestd-args': { type: 'string', default: '' },
      quick: { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const wanted = (values.scenarios ?? (quick ? QUICK_SCENARIOS.join(',') : undefined))
    ?.split(',')
    .map((name) => name.trim());
  const unknown = wanted?.filter((name) => !SCENARIOS.some((scenario) => scenario.name === name)) ?? [];
  if (unknown.length > 0) throw new Error(`--scenarios: unknown ${unknown.join(', ')}`);
  const scenarios = SCENARIOS.filter((scenario) => wanted === undefined || wanted.includes(scenario.name));
  const tool = values.tool ?? (wrkInstalled() ? 'wrk' : 'autocannon');
  if (!['autocannon', 'wrk', 'both'].includes(tool))
    throw new Error('--tool: expected autocannon, wrk or both');
  const tools = (tool === 'both' ? ['autocannon', 'wrk'] : [tool]) as ('autocannon' | 'wrk')[];
  if (tools.includes('wrk') && !wrkInstalled())
    throw new Error('--tool: wrk is not installed (apt-get install -y wrk)');
  return {
    seconds: parseCount(values.duration ?? (quick ? '2' : '5'), '--duration'),
    warmupSeconds: parseCount(values.warmup ?? (quick ? '0' : '1'), '--warmup'),
    runs: Math.max(1, parseCount(values.runs ?? (quick ? '1' : '3'), '--runs')),
    connections: Math.max(1, parseCount(values.connections, '--connections')),
    scenarios,
    workers: (values.workers ?? (quick ? QUICK_WORKERS : '1,default')).split(',').map((item) => item.trim()),
    storeSizes: values.preload
      .split(',')
      .map((item) => Math.max(0, parseCount(String(Number(item.trim())), '--preload')))
      .sort((a, b) => a - b),
    tools,
    baseline: !values['no-baseline'],
    nginx: !values['no-nginx'],
    outDir: path.resolve(values.out),
    chart: values.chart && path.resolve(values.chart),
    cpuProfileDir: values['cpu-prof'] && path.resolve(values['cpu-prof']),
    digestdBin: path.resolve(values['digestd-bin'] ?? DIGESTD_BIN),
    digestdArgs: (values['digestd-args'] ?? '').split(' ').filter(Boolean),
    quick,
    build: !values['no-build'] && values['digestd-bin'] === DIGESTD_BIN,
    help: values.help,
  };
}

type Options = ReturnType<typeof parseOptions>;

function workerSettings(options: Options, supported: boolean): WorkerSetting[] {
  if (!supported) return [{ label: '1 (no --workers)', flag: undefined, baselineWorkers: 1 }];
  return options.workers.map((item) => {
    if (item === 'default')
      return {
        label: `default (${availableParallelism()})`,
        flag: 'default' as const,
        baselineWorkers: availableParallelism(),
      };
    const count = parseCount(item, '--workers');
    return { label: String(count), flag: count, baselineWorkers: count };
  });
}

/**
 * How many cases a run measures and about how long it takes: each case runs every server for the
 * warm-up and the measured runs; each worker setting starts the servers afresh; preloading
 * writes about 100,000 messages a second. The overheads were measured on a 2-CPU machine.
 */
function estimateSeconds(options: Options, workerSettings = options.workers.length) {
  const nginx = options.nginx && nginxExecutable() !== undefined;
  let perSetting = 0;
  for (const scenario of options.scenarios) {
    const servers = 1 + (options.baseline ? 1 : 0) + (nginx && readsOnly(scenario) ? 1 : 0);
    // About half a second per run to start the load tool and read the processes' CPU time.
    perSetting +=
      options.tools.length * servers * (options.warmupSeconds + options.runs * (options.seconds + 0.5));
  }
  const SERVER_STARTS_SECONDS = 4;
  const largest = Math.max(0, ...options.storeSizes);
  const cases = options.storeSizes.length * workerSettings * options.scenarios.length * options.tools.length;
  const seconds =
    options.storeSizes.length * workerSettings * (perSetting + SERVER_STARTS_SECONDS) + largest / 100_000;
  return { cases, seconds };
}

/** One line: what a run measures and about how long it takes (the build aside). */
function describePlan(options: Options): string {
  const { cases, seconds } = estimateSeconds(options);
  const duration = seconds < 90 ? `${Math.ceil(seconds / 5) * 5} s` : `${Math.round(seconds / 60)} min`;
  const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;
  return (
    `${plural(cases, 'case')} (${plural(options.scenarios.length, 'scenario')} x ` +
    `${plural(options.workers.length, 'worker setting')} x ${plural(options.storeSizes.length, 'store size')}` +
    `${options.tools.length > 1 ? ' x 2 tools' : ''}), ${plural(options.runs, 'run')} of ${options.seconds} s per server` +
    `${options.warmupSeconds > 0 ? ` after ${options.warmupSeconds} s of warm-up` : ''}: about ${duration}`
  );
}

function machine() {
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAverageAtStart: loadavg().map((value) => Number(value.toFixed(2))),
  };
}

const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (options.help) {
    const quick = parseOptions(['--quick']);
    process.stdout.write(
      `${HELP}\nWith these options: ${describePlan(options)}.\n` +
        (options.quick ? '' : `With --quick: ${describePlan(quick)}.\n`),
    );
    return;
  }
  if (options.build) {
    log('building this checkout (npm run build; --no-build skips it)');
    const built = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
    if (built.status !== 0) throw new Error(`npm run build failed (${built.status ?? built.signal})`);
  }
  log(`plan: ${describePlan(options)}`);
  const supportsWorkers = digestdSupportsWorkers(options.digestdBin);
  const settings = workerSettings(options, supportsWorkers);
  if (!supportsWorkers)
    log('note: this digestd has no --workers flag; measuring the single-process server only');
  const nginx = options.nginx ? nginxExecutable() : undefined;
  const info = machine();
  log(
    `machine: ${info.nproc} CPUs (${info.cpu}), ${info.memoryGiB} GiB, Node ${info.node}, load ${info.loadAverageAtStart.join(' ')}`,
  );
  const workDir = await mkdtemp(path.join(tmpdir(), 'digestd-bench-'));
  // The preloaded store; each worker setting serves a fresh copy of it, so that what one setting
  // POSTed (gigabytes, with the 64 KiB scenarios) does not weigh on the next one's writes.
  const preloadDir = path.join(workDir, 'preloaded');
  const dataDir = path.join(workDir, 'data');
  const probeDir = path.join(workDir, 'probe');
  await mkdir(probeDir, { recursive: true });
  const nginxRoot = path.join(workDir, 'nginx-root');
  // Started by root, nginx's workers run as nobody: they must be able to reach their files in here.
  if (nginx && process.getuid?.() === 0) await chmod(workDir, 0o711);
  const results: CaseResult[] = [];
  const startedAt = new Date();
  const caseCount =
    options.storeSizes.length * settings.length * options.scenarios.length * options.tools.length;
  let caseNumber = 0;
  let stored = 0;
  let finished = false;
  try {
    for (const storeSize of options.storeSizes) {
      await preload(preloadDir, stored, storeSize);
      stored = storeSize;
      const pools = makePools(Math.max(storeSize, 1));
      const targets: Targets = {
        hits: Object.fromEntries(
          (Object.entries(pools) as [string, string[]][]).map(([name, messages]) => [
            name,
            messages.map(messagePath),
          ]),
        ),
        misses: missDigests().map((digest) => `/messages/${digest}`),
      };
      const seedFile = path.join(workDir, 'seed.json');
      const seed = [...pools.small, ...pools['4k'], ...pools['64k']];
      await writeFile(seedFile, JSON.stringify(seed));
      if (nginx) await writeNginxRoot(nginxRoot, seed);
      for (const setting of settings) {
        await freshCopy(preloadDir, dataDir);
        const digestd = await startDigestd({
          dataDir,
          workers: setting.flag,
          logFile: path.join(workDir, 'digestd.log'),
          probeDir,
          cpuProfileDir: options.cpuProfileDir,
          bin: options.digestdBin,
          extraArgs: options.digestdArgs,
        });
        let baseline: BenchServer | undefined;
        let nginxServer: BenchServer | undefined;
        const tls = {
          certPath: path.join(dataDir, 'tls', 'cert.pem'),
          keyPath: path.join(dataDir, 'tls', 'key.pem'),
          caPath: path.join(dataDir, 'tls', 'ca.pem'),
        };
        try {
          if (options.baseline) {
            baseline = await startBaseline({
              ...tls,
              seedFile,
              workers: setting.baselineWorkers,
              probeDir,
              errorFile: path.join(workDir, 'baseline.stderr'),
            });
          }
          if (nginx) {
            nginxServer = await startNginx({
              ...tls,
              executable: nginx,
              directory: path.join(workDir, 'nginx'),
              root: nginxRoot,
              workers: setting.baselineWorkers,
              connections: options.connections,
            });
            const samples = [...Object.values(targets.hits).map((paths) => paths[0]), targets.misses[0]];
            await assertSameAnswers(
              digestd,
              nginxServer,
              samples.filter((sample) => sample !== undefined),
              tls.caPath,
            );
          }
          for (const scenario of options.scenarios) {
            for (const tool of options.tools) {
              caseNumber++;
              const label = `[${caseNumber}/${caseCount}] stored ${storeSize.toLocaleString('en-US')}, workers ${setting.label}, ${scenario.name}, ${tool}`;
              results.push(
                await measureCase({
                  options,
                  digestd,
                  baseline,
                  nginx: nginxServer,
                  scenario,
                  tool,
                  targets,
                  workDir,
                  probeDir,
                  label,
                  storeSize,
                  workers: setting.label,
                }),
              );
            }
          }
        } finally {
          await nginxServer?.stop();
          await baseline?.stop();
          await digestd.stop();
        }
      }
    }
    finished = true;
  } finally {
    if (finished) await rm(workDir, { recursive: true, force: true });
    else {
      // Keep the servers' logs (digestd.log, its .stderr) to find out why; the store can be large.
      await rm(dataDir, { recursive: true, force: true });
      await rm(preloadDir, { recursive: true, force: true });
      log(`the servers' logs are kept in ${workDir}`);
    }
  }

  const table = markdownTable(results);
  process.stdout.write(`\n${table}\n\n${columnLegend(results)}\n\n`);
  const finishedInfo = { ...info, loadAverageAtEnd: loadavg().map((value) => Number(value.toFixed(2))) };
  const notes = supportsWorkers
    ? []
    : ['digestd has no --workers flag: only the single-process server was measured'];
  const heapMeasured = results.every((result) => result.digestd.memory.heapUsedBytes !== undefined);
  if (!heapMeasured) notes.push('the V8 heap was not reported for every case; only RSS is certain');
  if (options.nginx && !nginx) notes.push('nginx is not installed: measured without the nginx reference');
  await mkdir(options.outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const jsonFile = path.join(options.outDir, `bench-${stamp}.json`);
  const chartFile = options.chart ?? path.join(options.outDir, `bench-${stamp}.svg`);
  const subtitle = `${info.nproc} CPUs ${info.cpu}, Node ${info.node}, ${options.connections} connections, ${options.seconds} s x ${options.runs} runs, load ${info.loadAverageAtStart[0]}`;
  await writeFile(
    jsonFile,
    `${JSON.stringify({ startedAt: startedAt.toISOString(), machine: finishedInfo, options: { ...options, scenarios: options.scenarios.map((scenario) => scenario.name) }, supportsWorkers, notes, results }, null, 2)}\n`,
  );
  await mkdir(path.dirname(chartFile), { recursive: true });
  await writeFile(chartFile, throughputChart(results, subtitle));
  for (const note of notes) log(`note: ${note}`);
  log(`results: ${jsonFile}`);
  log(`chart:   ${chartFile}`);
}

async function measureCase(context: {
  options: Options;
  digestd: BenchServer;
  baseline: BenchServer | undefined;
  nginx: BenchServer | undefined;
  scenario: Scenario;
  tool: 'autocannon' | 'wrk';
  targets: Targets;
  workDir: string;
  probeDir: string;
  label: string;
  storeSize: number;
  workers: string;
}): Promise<CaseResult> {
  const { options, digestd, baseline, scenario, tool } = context;
  const run = (server: BenchServer, seconds: number) => {
    const load = {
      url: server.url,
      scenario,
      targets: context.targets,
      connections: options.connections,
      seconds,
    };
    return tool === 'wrk' ? runWrk({ ...load, workDir: context.workDir }) : runAutocannon(load);
  };
  const nginx = readsOnly(scenario) ? context.nginx : undefined;
  const servers = [digestd, baseline, nginx].filter((server) => server !== undefined);
  if (options.warmupSeconds > 0) for (const server of servers) await run(server, options.warmupSeconds);
  const runs = new Map<BenchServer, LoadResult[]>(servers.map((server) => [server, []]));
  const memory: MemoryPeak = { rssBytes: 0, rssAnonBytes: 0, heapUsedBytes: undefined };
  for (let index = 0; index < options.runs; index++) {
    // Alternate which server goes first, so drift in the machine's load falls on all of them.
    const order = index % 2 === 0 ? servers : [...servers].reverse();
    for (const server of order) {
      const sampler = server === digestd ? sampleDuring(digestd, context.probeDir, memory) : undefined;
      const pid = server.process.pid;
      const cpuBefore = pid === undefined ? { user: 0, system: 0 } : await cpuTime(pid);
      const result = await run(server, options.seconds);
      await sampler?.stop();
      const cpuAfter = pid === undefined ? cpuBefore : await cpuTime(pid);
      const user = cpuAfter.user - cpuBefore.user;
      const system = cpuAfter.system - cpuBefore.system;
      result.serverCpuMicrosPerRequest = result.requests > 0 ? (user + system) / result.requests : 0;
      result.serverSystemShare = user + system > 0 ? system / (user + system) : 0;
      runs.get(server)?.push(result);
      log(
        `${context.label}, ${server.name} run ${index + 1}/${options.runs}: ${Math.round(result.requestsPerSecond).toLocaleString('en-US')} req/s, p99 ${result.p99Ms.toFixed(1)} ms, ${result.serverCpuMicrosPerRequest.toFixed(0)} µs CPU/request (${percent(result.serverSystemShare)} in the kernel)${result.errors > 0 ? `, ${result.errors} errors` : ''}`,
      );
    }
  }
  const digestdSummary = summarize(runs.get(digestd) ?? []);
  const baselineSummary = baseline ? summarize(runs.get(baseline) ?? []) : undefined;
  const nginxSummary = nginx ? summarize(runs.get(nginx) ?? []) : undefined;
  return {
    storeSize: context.storeSize,
    workers: context.workers,
    scenario: scenario.name,
    tool,
    digestd: { ...digestdSummary, memory },
    baseline: baselineSummary,
    ratio: baselineSummary ? digestdSummary.requestsPerSecond / baselineSummary.requestsPerSecond : undefined,
    nginx: nginxSummary,
    nginxRatio: nginxSummary ? digestdSummary.requestsPerSecond / nginxSummary.requestsPerSecond : undefined,
  };
}

/** Samples the server's memory every 500 ms until stopped, keeping the peaks in `peak`. */
function sampleDuring(server: BenchServer, probeDir: string, peak: MemoryPeak): { stop(): Promise<void> } {
  const pid = server.process.pid;
  let pending: Promise<void> = Promise.resolve();
  const take = () => {
    if (pid === undefined) return;
    pending = sampleMemory(pid, probeDir)
      .then((sample) => {
        peak.rssBytes = Math.max(peak.rssBytes, sample.rssBytes);
        peak.rssAnonBytes = Math.max(peak.rssAnonBytes, sample.rssAnonBytes);
        if (sample.heapUsedBytes !== undefined)
          peak.heapUsedBytes = Math.max(peak.heapUsedBytes ?? 0, sample.heapUsedBytes);
      })
      .catch(() => undefined);
  };
  const timer = setInterval(take, 500);
  return {
    async stop() {
      clearInterval(timer);
      take();
      await pending;
    },
  };
}

/**
 * Replaces `to` with a copy of the LMDB store in `from` (its data file: LMDB makes a new lock
 * file), written to disk before the server starts, so that the kernel writing back gigabytes of
 * copied pages does not weigh on the first measured runs.
 */
async function freshCopy(from: string, to: string): Promise<void> {
  await rm(to, { recursive: true, force: true });
  await mkdir(to, { recursive: true });
  const file = path.join(to, 'data.mdb');
  await copyFile(path.join(from, 'data.mdb'), file);
  const handle = await open(file, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
