import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { TypedHistogram } from '../../src/histogram.js';
import { requestMetrics, storeOperationMetric } from '../../src/metrics.js';
import { sample } from '../helpers/metrics-text.js';

/**
 * digestd keeps its request and store histograms in typed arrays (src/histogram.ts) and derives
 * the request counter from them when scraped. These tests replay random sequences into them and
 * into prom-client's own Histogram and Counter (observe(), inc()) and require the same exposition:
 * the /metrics text, the JSON a cluster worker sends its primary, and the primary's aggregate;
 * and they check known observations against the buckets, sum and count written out by hand.
 * test/unit/http/metrics.test.ts checks what requests through the app expose.
 */

/** prom-client's own metrics with digestd's names, help, labels and buckets. */
function referenceMetrics(registry: Registry, ours: Registry) {
  const family = (name: string) =>
    ours.getSingleMetric(name) as unknown as { help: string; upperBounds: number[] };
  const requestDuration = family('digestd_http_request_duration_seconds');
  const storeDuration = family('digestd_store_operation_duration_seconds');
  return {
    duration: new Histogram({
      name: 'digestd_http_request_duration_seconds',
      help: requestDuration.help,
      labelNames: ['method', 'route', 'status'],
      buckets: [...requestDuration.upperBounds],
      registers: [registry],
    }),
    requests: new Counter({
      name: 'digestd_http_requests_total',
      help: (ours.getSingleMetric('digestd_http_requests_total') as unknown as { help: string }).help,
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    store: new Histogram({
      name: 'digestd_store_operation_duration_seconds',
      help: storeDuration.help,
      labelNames: ['store', 'operation', 'outcome'],
      buckets: [...storeDuration.upperBounds],
      registers: [registry],
    }),
  };
}

/** digestd's metrics and prom-client's, each in a registry of its own. */
function pair() {
  const oursRegistry = new Registry();
  const ours = { ...requestMetrics(oursRegistry), store: storeOperationMetric(oursRegistry) };
  const theirsRegistry = new Registry();
  const theirs = referenceMetrics(theirsRegistry, oursRegistry);
  return { oursRegistry, ours, theirsRegistry, theirs };
}

type Event =
  | { kind: 'request'; method: string; route: string; status: number; seconds: number }
  | { kind: 'store'; store: string; operation: string; outcome: string; seconds: number }
  | { kind: 'reset' };

/** Durations around every bucket bound, far past the last one, zero, negative and arbitrary. */
const seconds = fc.oneof(
  fc.constantFrom(0, -0, 0.0005, 0.001, 0.00005, 0.5, 1, 10, 10.000001, 1e9, -1),
  fc.double({ min: -1, max: 20, noNaN: true }),
  fc.double({ min: 0, max: 0.002, noNaN: true }),
);
const request = fc.record({
  kind: fc.constant('request' as const),
  method: fc.constantFrom('GET', 'HEAD', 'POST', 'UNKNOWN'),
  route: fc.constantFrom('/messages', '/messages/:digest', 'unmatched', '/metrics', 'a "quoted"\\route\n'),
  status: fc.constantFrom(200, 201, 304, 404, 405, 500, 503),
  seconds,
});
const store = fc.record({
  kind: fc.constant('store' as const),
  store: fc.constantFrom('lmdb', 'redis'),
  operation: fc.constantFrom('get', 'has', 'put', 'putMany', 'ping'),
  outcome: fc.constantFrom('ok', 'error'),
  seconds,
});
const events = fc.array(
  fc.oneof(
    { arbitrary: request, weight: 8 },
    { arbitrary: store, weight: 4 },
    { arbitrary: fc.constant({ kind: 'reset' as const }), weight: 1 },
  ),
  { maxLength: 200 },
);

function replay(metrics: ReturnType<typeof pair>, sequence: Event[]): void {
  const { ours, oursRegistry, theirs, theirsRegistry } = metrics;
  for (const event of sequence) {
    if (event.kind === 'reset') {
      oursRegistry.resetMetrics();
      theirsRegistry.resetMetrics();
    } else if (event.kind === 'request') {
      ours.count(event.method, event.route, event.status, event.seconds);
      const labels = { method: event.method, route: event.route, status: String(event.status) };
      theirs.duration.labels(labels).observe(event.seconds);
      theirs.requests.labels(labels).inc();
    } else {
      const labels = { store: event.store, operation: event.operation, outcome: event.outcome };
      ours.store.labels(labels).observe(event.seconds);
      theirs.store.labels(labels).observe(event.seconds);
    }
  }
}

/** What a worker sends its primary: structured clone, as cluster IPC with advanced serialization does. */
const sent = async (registry: Registry) => structuredClone(await registry.getMetricsAsJSON());

describe('request and store metrics', () => {
  it('expose the text prom-client exposes for the same observations', async () => {
    await fc.assert(
      fc.asyncProperty(events, async (sequence) => {
        const metrics = pair();
        replay(metrics, sequence);
        assert.equal(await metrics.oursRegistry.metrics(), await metrics.theirsRegistry.metrics());
      }),
      { numRuns: 300 },
    );
  });

  it('send the primary the values prom-client sends, which aggregate to the same text', async () => {
    await fc.assert(
      fc.asyncProperty(events, events, async (first, second) => {
        const workers = [pair(), pair()];
        replay(workers[0]!, first);
        replay(workers[1]!, second);
        const ours = await Promise.all(workers.map((worker) => sent(worker.oursRegistry)));
        const theirs = await Promise.all(workers.map((worker) => sent(worker.theirsRegistry)));
        assert.deepEqual(ours, theirs);
        assert.equal(
          await AggregatorRegistry.aggregate(ours).metrics(),
          await AggregatorRegistry.aggregate(theirs).metrics(),
        );
      }),
      { numRuns: 150 },
    );
  });

  it('refuse a duration that is not a finite number, as prom-client does', () => {
    const { ours, theirs } = pair();
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => ours.count('GET', '/messages', 200, value), TypeError);
      assert.throws(
        () => theirs.duration.labels({ method: 'GET', route: '/', status: '200' }).observe(value),
        TypeError,
      );
    }
  });
});

describe('typed-array histograms', () => {
  it('count each value in the first bucket whose bound is not below it, with its sum and count', async () => {
    const registry = new Registry();
    const histogram = new TypedHistogram({
      name: 'example_seconds',
      help: 'Example.',
      labelNames: ['kind'] as const,
      buckets: [0.1, 1, 10],
      registers: [registry],
    });
    const series = histogram.labels({ kind: 'a' });
    for (const value of [0.05, 0.1, 0.5, 1, 5, 20]) series.observe(value);
    const text = await registry.metrics();
    const expected: [string, number][] = [
      ['example_seconds_bucket{le="0.1",kind="a"}', 2],
      ['example_seconds_bucket{le="1",kind="a"}', 4],
      ['example_seconds_bucket{le="10",kind="a"}', 5],
      ['example_seconds_bucket{le="+Inf",kind="a"}', 6],
      ['example_seconds_sum{kind="a"}', 26.65],
      ['example_seconds_count{kind="a"}', 6],
    ];
    for (const [series, value] of expected) assert.equal(sample(text, series), value, series);
    assert.deepEqual(histogram.counts(), [{ labels: { kind: 'a' }, count: 6 }]);
  });
});
