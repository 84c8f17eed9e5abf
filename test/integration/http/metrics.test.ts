import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { sample } from '../../helpers/metrics-text.js';
import { request, startServer, temporaryDirectory } from '../../helpers/server.js';

describe('--metrics-port', () => {
  it('serves /metrics on a separate localhost listener and not on the public port', async () => {
    const server = await startServer({ args: ['--no-tls', '--metrics-port', '0'] });
    try {
      const line = server.logs.find((entry) => typeof entry.metricsAddress === 'string');
      assert.ok(line, 'the metrics address is logged');
      const metricsAddress = String(line.metricsAddress);
      assert.match(metricsAddress, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(new URL(metricsAddress).port, String(server.port));

      const posted = await request(`${server.url}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'counted' }),
      });
      assert.equal(posted.status, 201);
      const scraped = await request(`${metricsAddress}/metrics`);
      assert.equal(scraped.status, 200);
      assert.equal(
        sample(scraped.body, 'digestd_http_requests_total{method="POST",route="/messages",status="201"}'),
        1,
      );
      assert.equal(sample(scraped.body, 'digestd_messages_stored_total'), 1);

      const publicScrape = await request(`${server.url}/metrics`);
      assert.equal(publicScrape.status, 404);
      const elsewhere = await request(`${metricsAddress}/messages`);
      assert.equal(elsewhere.status, 404);
      assert.equal(elsewhere.json<{ code: string }>().code, 'ROUTE_NOT_FOUND');
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });
});

describe('metrics across cluster workers', () => {
  const FIXTURE = fileURLToPath(new URL('../fixtures/metrics-cluster.ts', import.meta.url));

  it('counts from two workers add up', async () => {
    const dataDir = await temporaryDirectory('digestd-cluster-metrics-');
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dataDir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const ready = await new Promise<{ port: number; metricsAddress: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the cluster fixture did not start')), 60_000);
        createInterface({ input: child.stdout }).once('line', (line) => {
          clearTimeout(timer);
          resolve(JSON.parse(line) as { port: number; metricsAddress: string });
        });
        child.once('exit', (code) => reject(new Error(`the cluster fixture exited with ${code}`)));
      });
      const posts = 'digestd_http_requests_total{method="POST",route="/messages",status="201"}';
      const postLatency =
        'digestd_http_request_duration_seconds_count{method="POST",route="/messages",status="201"}';
      const putTimings =
        'digestd_store_operation_duration_seconds_count{store="lmdb",operation="put",outcome="ok"}';
      // Worker 1 posted 3 messages and worker 2 posted 5 (see the fixture).
      const check = (text: string, where: string) => {
        assert.equal(sample(text, posts), 8, where);
        assert.equal(sample(text, postLatency), 8, where);
        assert.equal(sample(text, putTimings), 8, where);
        assert.equal(sample(text, 'digestd_messages_stored_total'), 8, where);
        assert.equal(sample(text, 'digestd_worker_restarts_total'), 1, where);
        assert.match(text, /^nodejs_heap_size_used_bytes \d+/m, where);
      };
      // The primary's own listener, then the public port several times: the kernel hands the
      // connections to both workers, and each asks the primary for the same totals.
      check((await request(`${ready.metricsAddress}/metrics`)).body, 'metrics listener');
      for (let attempt = 0; attempt < 4; attempt++) {
        const response = await request(`http://127.0.0.1:${ready.port}/metrics`, { agent: false });
        assert.equal(response.status, 200);
        check(response.body, `public port, scrape ${attempt}`);
      }
    } finally {
      child.kill('SIGTERM');
    }
  });
});
