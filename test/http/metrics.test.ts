import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { StoreUnavailable } from '../../src/errors.js';
import { metrics } from '../../src/metrics.js';
import { buildTestApp, useTestApp } from '../helpers/app.js';
import { request, startServer, temporaryDirectory } from '../helpers/server.js';

/** The value of the sample whose name and labels are exactly `series`, or undefined. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const testApp = useTestApp();

const scrape = async () => {
  const response = await testApp.app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(response.statusCode, 200);
  return response.body;
};
const post = (message: string) =>
  testApp.app.inject({
    method: 'POST',
    url: '/messages',
    headers: { 'content-type': 'application/json' },
    payload: { message },
  });

describe('GET /metrics', () => {
  it('answers the Prometheus text format with every metric family', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    for (const family of [
      'digestd_http_requests_total counter',
      'digestd_http_request_duration_seconds histogram',
      'digestd_store_operation_duration_seconds histogram',
      'digestd_cache_hits_total counter',
      'digestd_cache_misses_total counter',
      'digestd_messages_stored_total counter',
      'digestd_corrupt_messages_total counter',
      'digestd_worker_restarts_total counter',
      'process_cpu_user_seconds_total counter',
      'process_resident_memory_bytes gauge',
      'nodejs_eventloop_lag_seconds gauge',
      'nodejs_heap_size_used_bytes gauge',
    ]) {
      assert.match(response.body, new RegExp(`^# TYPE ${family}$`, 'm'), family);
    }
  });

  it('counts requests by method, route pattern and status, with latency histograms', async () => {
    const series = 'digestd_http_requests_total{method="POST",route="/messages",status="201"}';
    const latency =
      'digestd_http_request_duration_seconds_count{method="POST",route="/messages",status="201"}';
    const notFound = 'digestd_http_requests_total{method="GET",route="/messages/:digest",status="404"}';
    const before = await scrape();
    await post('one');
    await post('two');
    await testApp.app.inject({ method: 'GET', url: `/messages/${'0'.repeat(64)}` });
    const after = await scrape();
    assert.equal((sample(after, series) ?? 0) - (sample(before, series) ?? 0), 2);
    assert.equal((sample(after, latency) ?? 0) - (sample(before, latency) ?? 0), 2);
    assert.equal((sample(after, notFound) ?? 0) - (sample(before, notFound) ?? 0), 1);
  });

  it('labels unknown routes "unmatched" instead of their URL', async () => {
    await testApp.app.inject({ method: 'GET', url: '/no/such/route/12345' });
    const text = await scrape();
    assert.ok(
      (sample(text, 'digestd_http_requests_total{method="GET",route="unmatched",status="404"}') ?? 0) >= 1,
    );
    assert.doesNotMatch(text, /12345/);
  });

  it('counts messages stored, by single posts and batches', async () => {
    const name = 'digestd_messages_stored_total';
    const before = sample(await scrape(), name) ?? 0;
    await post('stored');
    await testApp.app.inject({
      method: 'POST',
      url: '/messages/batch',
      headers: { 'content-type': 'application/json' },
      payload: { messages: ['a', 'b', 'c'] },
    });
    assert.equal((sample(await scrape(), name) ?? 0) - before, 4);
  });

  it('times store operations by store, operation and outcome', async () => {
    const put = 'digestd_store_operation_duration_seconds_count{store="lmdb",operation="put",outcome="ok"}';
    const get = 'digestd_store_operation_duration_seconds_count{store="lmdb",operation="get",outcome="ok"}';
    const before = await scrape();
    await post('timed');
    await testApp.app.inject({ method: 'GET', url: `/messages/${'1'.repeat(64)}` });
    const after = await scrape();
    assert.equal((sample(after, put) ?? 0) - (sample(before, put) ?? 0), 1);
    assert.equal((sample(after, get) ?? 0) - (sample(before, get) ?? 0), 1);
  });

  it('times a failed store operation as outcome "error", and the request answers 503', async () => {
    const failed =
      'digestd_store_operation_duration_seconds_count{store="lmdb",operation="get",outcome="error"}';
    const store = testApp.store;
    const get = store.get.bind(store);
    store.get = () => Promise.reject(new StoreUnavailable('The LMDB store failed to read.'));
    try {
      const before = await scrape();
      const response = await testApp.app.inject({ method: 'GET', url: `/messages/${'2'.repeat(64)}` });
      assert.equal(response.statusCode, 503);
      const after = await scrape();
      assert.equal((sample(after, failed) ?? 0) - (sample(before, failed) ?? 0), 1);
    } finally {
      store.get = get;
    }
  });

  it('exposes the cache counters another module increments', async () => {
    const before = await scrape();
    metrics.cacheHits.inc(2);
    metrics.cacheMisses.inc();
    const after = await scrape();
    assert.equal(
      (sample(after, 'digestd_cache_hits_total') ?? 0) - (sample(before, 'digestd_cache_hits_total') ?? 0),
      2,
    );
    assert.equal(
      (sample(after, 'digestd_cache_misses_total') ?? 0) -
        (sample(before, 'digestd_cache_misses_total') ?? 0),
      1,
    );
  });

  it('is absent from the public listener when served elsewhere', async () => {
    const separate = await buildTestApp({ metrics: false });
    try {
      const response = await separate.app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(response.statusCode, 404);
      assert.equal(response.json<{ code: string }>().code, 'ROUTE_NOT_FOUND');
    } finally {
      await separate.close();
    }
  });
});

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
        const timer = setTimeout(() => reject(new Error('the cluster fixture did not start')), 30_000);
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
