import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { startServer, temporaryDirectory, type RunningServer } from '../../harness/digestd.js';
import { freePort } from '../../harness/free-port.js';
import { request } from '../../harness/http.js';
import { serviceSkip } from '../../helpers/services.js';

/**
 * deploy/prometheus/rules.yaml and deploy/grafana/digestd.json, tested by the programs that use
 * them: promtool checks the rules and runs their unit tests, and a real Prometheus scrapes a
 * two-worker digestd over HTTPS (trusting its local CA) and evaluates the rules, so that a rule or
 * a panel naming a metric or label digestd does not have shows up as a query without data.
 */

const run = promisify(execFile);
const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';
const rulesFile = fileURLToPath(new URL('../../../deploy/prometheus/rules.yaml', import.meta.url));
const rulesTestFile = fileURLToPath(new URL('../../../deploy/prometheus/rules.test.yaml', import.meta.url));
const dashboardFile = fileURLToPath(new URL('../../../deploy/grafana/digestd.json', import.meta.url));
const JOB = 'digestd';

const skip = await serviceSkip(
  "Debian's Prometheus (prometheus, promtool)",
  () => Promise.all([access(PROMETHEUS), access(PROMTOOL)]),
  'install prometheus (bash .ci/services does)',
);

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}
interface AlertTest {
  alertname: string;
  exp_alerts?: unknown[] | null;
}

const rules = (parse(await readFile(rulesFile, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap(
  (group) => group.rules,
);
const alertNames = rules.flatMap((rule) => (rule.alert === undefined ? [] : [rule.alert]));
const recordNames = rules.flatMap((rule) => (rule.record === undefined ? [] : [rule.record]));

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string; refId: string }[];
  panels?: Panel[];
}
const dashboard = JSON.parse(await readFile(dashboardFile, 'utf8')) as {
  panels: Panel[];
  templating: { list: { name: string }[] };
};

/** The queries of every panel, with Grafana's variables as the test's Prometheus needs them. */
function panelQueries(): { panel: string; expr: string }[] {
  const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  return panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      panel: `${panel.title} (${target.refId})`,
      expr: target.expr.replaceAll('$job', JOB).replaceAll('$__rate_interval', '1m'),
    })),
  );
}

/** Series names a PromQL expression reads: digestd's metrics and the recorded ones. */
function seriesNames(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:digestd_[a-z_]+|job[a-z_]*:[a-z0-9_:]+)\b/g) ?? [])];
}

describe('Prometheus rules and the Grafana dashboard', { skip }, () => {
  it('promtool checks the rules and runs their tests, with a firing and a silent case for every alert', async () => {
    const checked = await run(PROMTOOL, ['check', 'rules', rulesFile]);
    assert.match(checked.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
    // promtool prints which case failed and what it got: show that rather than the exit code.
    const tested = await run(PROMTOOL, ['test', 'rules', rulesTestFile], {
      maxBuffer: 16 * 1024 * 1024,
    }).catch((error: { stdout?: string; stderr?: string }) => {
      throw new Error(`promtool test rules failed:\n${error.stdout}${error.stderr}`);
    });
    assert.match(tested.stdout, /SUCCESS/);

    const cases = (
      parse(await readFile(rulesTestFile, 'utf8')) as { tests: { alert_rule_test?: AlertTest[] }[] }
    ).tests.flatMap((test) => test.alert_rule_test ?? []);
    assert.ok(alertNames.length >= 14, `${alertNames.length} alerts`);
    for (const name of alertNames) {
      const mine = cases.filter((entry) => entry.alertname === name);
      assert.ok(
        mine.some((entry) => (entry.exp_alerts ?? []).length > 0),
        `${name}: a case where it fires`,
      );
      assert.ok(
        mine.some((entry) => (entry.exp_alerts ?? []).length === 0),
        `${name}: a case where it stays silent`,
      );
    }
  });

  describe('a real Prometheus scraping a two-worker digestd', () => {
    let server: RunningServer;
    let prometheus: ChildProcess;
    let prometheusUrl: string;
    let directory: string;
    /** Every query the tests need a value of: recorded series, series alerts read, panel queries. */
    const recorded = recordNames.map((name) => `${name}{job="${JOB}"}`);
    const alerting = [
      ...new Set(rules.flatMap((rule) => (rule.alert === undefined ? [] : seriesNames(rule.expr)))),
    ];
    const panels = panelQueries();
    /** Those that have not answered with a value yet. */
    const unanswered = new Set([...recorded, ...alerting, ...panels.map((panel) => panel.expr)]);

    /** One instant query; the result's series. */
    async function query(
      expr: string,
    ): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
      const reply = await request(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = reply.json<{ status: string; error?: string; data: { result: [] } }>();
      assert.equal(body.status, 'success', `${expr}: ${body.error}`);
      return body.data.result;
    }

    /** Some of every kind of request: writes, reads that hit and miss, and a client error. */
    async function traffic(round: number): Promise<void> {
      const options = { ca: server.ca, headers: { 'content-type': 'application/json' } };
      for (let index = 0; index < 10; index++) {
        const posted = await request(`${server.url}/messages`, {
          ...options,
          method: 'POST',
          body: JSON.stringify({ message: `message ${round}.${index}` }),
        });
        assert.equal(posted.status, 201);
        const { digest } = posted.json<{ digest: string }>();
        assert.equal((await request(`${server.url}/messages/${digest}`, { ca: server.ca })).status, 200);
      }
      assert.equal(
        (await request(`${server.url}/messages/${'0'.repeat(64)}`, { ca: server.ca })).status,
        404,
      );
      assert.equal(
        (await request(`${server.url}/messages`, { ...options, method: 'POST', body: '{' })).status,
        400,
      );
    }

    before(async () => {
      directory = await temporaryDirectory('digestd-prometheus-');
      server = await startServer({ args: ['--workers', '2'] });
      const port = await freePort();
      prometheusUrl = `http://127.0.0.1:${port}`;
      const config = {
        global: { scrape_interval: '2s', scrape_timeout: '2s', evaluation_interval: '1s' },
        rule_files: [rulesFile],
        scrape_configs: [
          {
            job_name: JOB,
            scheme: 'https',
            tls_config: { ca_file: path.join(server.dataDir, 'tls', 'ca.pem') },
            static_configs: [{ targets: [`127.0.0.1:${server.port}`] }],
          },
        ],
      };
      await writeFile(path.join(directory, 'prometheus.yml'), JSON.stringify(config));
      prometheus = spawn(
        PROMETHEUS,
        [
          `--config.file=${path.join(directory, 'prometheus.yml')}`,
          `--storage.tsdb.path=${path.join(directory, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let log = '';
      prometheus.stderr?.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
      const deadline = Date.now() + 30_000;
      for (;;) {
        const ready = await request(`${prometheusUrl}/-/ready`, { timeoutMs: 1000 }).catch(() => undefined);
        if (ready?.status === 200) break;
        assert.ok(prometheus.exitCode === null, `prometheus exited: ${log}`);
        assert.ok(Date.now() < deadline, `prometheus not ready within 30 s: ${log}`);
        await sleep(200);
      }
      // Traffic between scrapes and evaluations until every query has answered with a value once
      // (rate() needs two samples with requests between them); bounded in rounds and time. A query
      // is asked until it has had its value, so a slow scrape on a loaded machine only delays it.
      const until = Date.now() + 90_000;
      for (let round = 0; round < 300 && Date.now() < until && unanswered.size > 0; round++) {
        await traffic(round);
        for (const expr of unanswered) {
          const result = await query(expr);
          if (result.some((series) => Number.isFinite(Number(series.value[1])))) unanswered.delete(expr);
        }
        await sleep(500);
      }
    });

    after(async () => {
      if (prometheus !== undefined && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus.once('exit', resolve));
        prometheus.kill('SIGTERM');
        await exited;
      }
      await server?.stop();
      await rm(directory, { recursive: true, force: true });
    });

    it('scrapes both workers through the primary over HTTPS', async () => {
      // A scrape may time out on a loaded machine: the last minute's best, not the latest alone.
      const up = await query(`max_over_time(up{job="${JOB}"}[1m])`);
      assert.deepEqual(
        up.map((series) => series.value[1]),
        ['1'],
      );
      assert.equal(server.workerPids().length, 2);
    });

    it('evaluates every rule without error, and every recording rule has a value', async () => {
      const reply = await request(`${prometheusUrl}/api/v1/rules`);
      const groups = reply.json<{
        data: { groups: { rules: { name: string; health: string; lastError?: string; type: string }[] }[] };
      }>().data.groups;
      const loaded = groups.flatMap((group) => group.rules);
      assert.equal(loaded.length, rules.length);
      for (const rule of loaded) assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError}`);

      assert.deepEqual(
        recorded.filter((expr) => unanswered.has(expr)),
        [],
      );
    });

    it('has data for every series an alert reads', () => {
      for (const rule of rules.filter((entry) => entry.alert !== undefined)) {
        assert.ok(seriesNames(rule.expr).length > 0, `${rule.alert}: reads no digestd series`);
      }
      assert.deepEqual(
        alerting.filter((expr) => unanswered.has(expr)),
        [],
      );
    });

    it('has data for every query of every dashboard panel', async () => {
      assert.ok(panels.length >= 20, `${panels.length} panel queries`);
      assert.deepEqual(
        dashboard.templating.list.map((variable) => variable.name),
        ['datasource', 'job'],
      );
      assert.deepEqual(
        panels.filter(({ expr }) => unanswered.has(expr)).map(({ panel, expr }) => `${panel}: ${expr}`),
        [],
      );
      // The job variable's own query finds the job.
      const jobs = await request(
        `${prometheusUrl}/api/v1/label/job/values?match[]=digestd_http_requests_total`,
      );
      assert.deepEqual(jobs.json<{ data: string[] }>().data, [JOB]);
    });
  });
});
