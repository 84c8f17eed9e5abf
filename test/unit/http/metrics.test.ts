import assert from 'node:assert/strict';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { StoreUnavailable } from '../../../src/errors.js';
import { digestOf } from '../../../src/digest.js';
import { measureFreeSpaceOf, metrics } from '../../../src/metrics.js';
import { cachedStore } from '../../../src/store/cache.js';
import { buildTestApp, useTestApp } from '../../helpers/app.js';
import { sample } from '../../helpers/metrics-text.js';

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
      'digestd_log_lines_dropped_total counter',
      'digestd_data_free_bytes gauge',
      'digestd_store_write_failures_total counter',
      'digestd_worker_timeouts_total counter',
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
    const getSync = store.getSync?.bind(store);
    // Both reads fail, as a failing LMDB's do: the route reads synchronously where it can.
    store.get = () => Promise.reject(new StoreUnavailable('The LMDB store failed to read.'));
    store.getSync = () => {
      throw new StoreUnavailable('The LMDB store failed to read.');
    };
    try {
      const before = await scrape();
      const response = await testApp.app.inject({ method: 'GET', url: `/messages/${'2'.repeat(64)}` });
      assert.equal(response.statusCode, 503);
      const after = await scrape();
      assert.equal((sample(after, failed) ?? 0) - (sample(before, failed) ?? 0), 1);
    } finally {
      store.get = get;
      store.getSync = getSync;
    }
  });

  it('shows every write failure reason and both log destinations at 0 before the first, so increase() sees it', async () => {
    const text = await scrape();
    for (const reason of ['insufficient_storage', 'timeout', 'too_few_replicas', 'unavailable']) {
      const series = `digestd_store_write_failures_total{store="lmdb",reason="${reason}"}`;
      assert.notEqual(sample(text, series), undefined, series);
    }
    for (const destination of ['log', 'ipc']) {
      const series = `digestd_log_lines_dropped_total{destination="${destination}"}`;
      assert.notEqual(sample(text, series), undefined, series);
    }
  });

  it('reports the free bytes of the data directory once told which it is', async () => {
    measureFreeSpaceOf(tmpdir());
    const space = await statfs(tmpdir());
    const free = sample(await scrape(), 'digestd_data_free_bytes');
    assert.ok(free !== undefined && free > 0, `digestd_data_free_bytes ${free}`);
    // Another process may write meanwhile: the same file system within a margin.
    const expected = space.bavail * space.bsize;
    assert.ok(Math.abs(free - expected) < 64 * 1024 * 1024, `${free} vs ${expected}`);
  });

  it('exposes the hits and misses the message cache counts', async () => {
    const cached = cachedStore(testApp.store, {
      maxBytes: 1024 * 1024,
      counters: { hits: metrics.cacheHits, misses: metrics.cacheMisses },
    });
    const stored = await post('cached');
    assert.equal(stored.statusCode, 201);
    const digest = digestOf('cached');
    const absent = digestOf('never stored by the cache test');
    const before = await scrape();
    // A miss that fills the cache, a hit, and a miss for a message that does not exist.
    assert.equal(await cached.get(digest), 'cached');
    assert.equal(await cached.get(digest), 'cached');
    assert.equal(await cached.get(absent), undefined);
    const after = await scrape();
    const change = (name: string) => (sample(after, name) ?? 0) - (sample(before, name) ?? 0);
    assert.equal(change('digestd_cache_hits_total'), 1);
    assert.equal(change('digestd_cache_misses_total'), 2);
  });

  it('exposes request latency buckets that are cumulative and add up to the request count', async () => {
    await post('bucketed');
    await post('bucketed');
    const text = await scrape();
    const labels = 'method="POST",route="/messages",status="201"';
    const bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
    const buckets = [...bounds.map(String), '+Inf'].map((le) => {
      const series = `digestd_http_request_duration_seconds_bucket{le="${le}",${labels}}`;
      const value = sample(text, series);
      assert.notEqual(value, undefined, series);
      return value!;
    });
    for (let index = 1; index < buckets.length; index += 1) {
      assert.ok(buckets[index]! >= buckets[index - 1]!, `buckets not cumulative: ${buckets.join(' ')}`);
    }
    const count = sample(text, `digestd_http_request_duration_seconds_count{${labels}}`);
    const sum = sample(text, `digestd_http_request_duration_seconds_sum{${labels}}`);
    assert.ok(count !== undefined && count >= 2, `count ${count}`);
    assert.equal(buckets.at(-1), count);
    assert.equal(sample(text, `digestd_http_requests_total{${labels}}`), count);
    assert.ok(sum !== undefined && sum > 0, `sum ${sum}`);
  });

  it('is absent from the public listener when served elsewhere', async () => {
    const separate = await buildTestApp(['--metrics-port', '0']);
    try {
      const response = await separate.app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(response.statusCode, 404);
      assert.equal(response.json<{ code: string }>().code, 'ROUTE_NOT_FOUND');
    } finally {
      await separate.close();
    }
  });
});
