import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { wrkInstalled } from '../../../bench/load.js';
import { nginxExecutable } from '../../../bench/servers.js';
import { temporaryDirectory } from '../../helpers/server.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const run = promisify(execFile);

interface BenchJson {
  supportsWorkers: boolean;
  results: {
    scenario: string;
    tool: string;
    digestd: {
      requestsPerSecond: number;
      errors: number;
      runs: { requests: number }[];
      memory: { rssBytes: number };
      cpuMicrosPerRequest: number;
      systemShare: number;
    };
    baseline: {
      requestsPerSecond: number;
      runs: { requests: number }[];
      cpuMicrosPerRequest: number;
      systemShare: number;
    };
    ratio: number;
    nginx?: { requestsPerSecond: number; errors: number; runs: { requests: number }[] };
    nginxRatio?: number;
  }[];
}

/** Runs the harness in quick mode (about a second per scenario) and reads what it wrote. */
async function quickBench(extra: string[]): Promise<{ json: BenchJson; svg: string; stdout: string }> {
  const out = await temporaryDirectory('digestd-bench-test-');
  try {
    const chart = path.join(out, 'chart.svg');
    const { stdout } = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        'bench/run.ts',
        '--no-build',
        '--quick',
        '--workers',
        '1',
        '--preload',
        '1000',
        '--out',
        out,
        '--chart',
        chart,
        ...extra,
      ],
      { cwd: ROOT, timeout: 120_000 },
    );
    const files = (await readdir(out)).filter((name) => name.endsWith('.json'));
    assert.equal(files.length, 1, `one JSON result file in ${out}`);
    const json = JSON.parse(await readFile(path.join(out, files[0] ?? ''), 'utf8')) as BenchJson;
    return { json, svg: await readFile(chart, 'utf8'), stdout };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

function assertWellFormedSvg(svg: string, scenarios: string[]): void {
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/);
  assert.match(svg, /<\/svg>\n$/);
  for (const scenario of scenarios)
    assert.ok(svg.includes(`>${scenario}</text>`), `the chart labels ${scenario}`);
  assert.ok((svg.match(/<rect /g) ?? []).length > scenarios.length * 2, 'the chart has bars');
}

// CI installs nginx (.ci/services): there the nginx figures must be in the report.
const expectNginx = nginxExecutable() !== undefined || process.env.CI === 'true';

describe('npm run bench', { timeout: 240_000 }, () => {
  it('answers --help at once, without building, with the defaults, the scenarios and how long a run takes', async () => {
    const built = path.join(ROOT, 'dist', 'cli', 'main.js');
    const before = (await stat(built)).mtimeMs;
    const { stdout } = await run('npm', ['run', '--silent', 'bench', '--', '--help'], { cwd: ROOT });
    assert.equal((await stat(built)).mtimeMs, before, 'dist/ was not rebuilt');
    assert.match(stdout, /^Usage: npm run bench -- \[options\]/);
    assert.match(stdout, /--duration S +seconds per measured run \(default 5; --quick: 2\)/);
    assert.match(stdout, /^ +post-new +POST a new small message \(durable write\)$/m);
    const full =
      /^With these options: 18 cases \(9 scenarios x 2 worker settings x 1 store size\), 3 runs of 5 s per server after 1 s of warm-up: about (\d+) min\.$/m.exec(
        stdout,
      );
    assert.ok(full, stdout);
    const quick = /^With --quick: 3 cases .*: about (\d+) s\.$/m.exec(stdout);
    assert.ok(quick && Number(quick[1]) < 60, `the quick run is estimated under a minute: ${quick?.[0]}`);
    // A run's estimate follows its options.
    const { stdout: shorter } = await run(
      'npm',
      [
        'run',
        '--silent',
        'bench',
        '--',
        '--help',
        '--scenarios',
        'get-hit',
        '--workers',
        '1',
        '--runs',
        '1',
        '--warmup',
        '0',
        '--no-nginx',
        '--no-baseline',
      ],
      { cwd: ROOT },
    );
    assert.match(
      shorter,
      /^With these options: 1 case \(1 scenario x 1 worker setting x 1 store size\), 1 run of 5 s per server: about 10 s\.$/m,
    );
  });

  it('measures digestd, the baseline and nginx and writes JSON results and an SVG chart', async () => {
    const scenarios = ['get-hit', 'get-miss', 'post-new'];
    const { json, svg, stdout } = await quickBench([
      '--scenarios',
      scenarios.join(','),
      '--tool',
      'autocannon',
    ]);
    assert.deepEqual(
      json.results.map((result) => result.scenario),
      scenarios,
    );
    for (const result of json.results) {
      assert.equal(result.tool, 'autocannon');
      assert.ok(
        result.digestd.runs[0] && result.digestd.runs[0].requests > 0,
        `${result.scenario}: digestd answered`,
      );
      assert.ok(
        result.baseline.runs[0] && result.baseline.runs[0].requests > 0,
        `${result.scenario}: baseline answered`,
      );
      assert.equal(result.digestd.errors, 0, `${result.scenario}: every answer had the expected status`);
      assert.ok(result.ratio > 0);
      assert.ok(result.digestd.memory.rssBytes > 0, 'the server memory was sampled');
      for (const server of [result.digestd, result.baseline]) {
        assert.ok(server.cpuMicrosPerRequest > 0, `${result.scenario}: the server's CPU was measured`);
        // TLS over sockets always takes system calls, and never only them.
        assert.ok(server.systemShare > 0 && server.systemShare < 1, `kernel share ${server.systemShare}`);
      }
      assert.ok(stdout.includes(`| ${result.scenario}`), 'the table has a row per scenario');
      if (!expectNginx) continue;
      if (result.scenario === 'post-new') {
        assert.equal(result.nginx, undefined, 'nginx, a static reference, is left out of POST scenarios');
        continue;
      }
      assert.ok(
        result.nginx?.runs[0] && result.nginx.runs[0].requests > 0 && result.nginx.requestsPerSecond > 0,
        `${result.scenario}: nginx answered`,
      );
      // autocannon counts statuses: nginx answered each hit with 200 and each miss with 404.
      assert.equal(result.nginx.errors, 0, `${result.scenario}: nginx answered with the expected status`);
      assert.ok(result.nginxRatio !== undefined && result.nginxRatio > 0);
    }
    if (expectNginx) assert.match(stdout, /\| nginx req\/s \| p99 ms \| vs nginx \|/);
    // Below the table, what its columns mean.
    assert.match(
      stdout,
      /^ {2}CPU µs\/req +CPU time \(user \+ kernel\) of all the server's processes per request/m,
    );
    assert.match(stdout, /^ {2}in kernel +the share of that CPU time spent in the kernel/m);
    if (expectNginx) assert.match(stdout, /^ {2}nginx, vs nginx +nginx serving the same answers/m);
    assertWellFormedSvg(svg, scenarios);
  });

  it(
    'drives the same scenarios with wrk, without nginx when told',
    { skip: !wrkInstalled() && 'wrk is not installed' },
    async () => {
      const scenarios = ['get-hit', 'mix-90-10'];
      const { json, svg, stdout } = await quickBench([
        '--scenarios',
        scenarios.join(','),
        '--tool',
        'wrk',
        '--no-nginx',
      ]);
      assert.deepEqual(
        json.results.map((result) => result.scenario),
        scenarios,
      );
      for (const result of json.results) {
        assert.equal(result.tool, 'wrk');
        assert.ok(result.digestd.runs[0] && result.digestd.runs[0].requests > 0);
        assert.ok(result.baseline.runs[0] && result.baseline.runs[0].requests > 0);
        assert.equal(result.digestd.errors, 0);
        assert.equal(result.nginx, undefined, `${result.scenario}: --no-nginx leaves nginx out`);
      }
      assert.ok(!stdout.includes('nginx'), 'the table has no nginx columns');
      assertWellFormedSvg(svg, scenarios);
    },
  );
});
