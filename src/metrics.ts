import { statfs } from 'node:fs/promises';
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics, register } from 'prom-client';
import { TypedHistogram, type HistogramSeries } from './histogram.js';

/**
 * The Prometheus metrics of digestd (prom-client): definitions and registries only, so that any
 * module may count without this one knowing it. The composition root (src/server.ts) hands the
 * store's instruments to the instrumented store and the cache; the HTTP layer counts requests,
 * the supervisor counts `supervisorMetrics.workerRestarts`.
 *
 * Two registries, so that cluster aggregation adds up:
 * - `workerRegistry` (prom-client's global one): per serving process; in a cluster, each worker
 *   sends its values to the primary, which sums them (src/process/metrics.ts).
 * - `supervisorRegistry`: metrics only the primary knows (worker restarts); added once.
 */
export const workerRegistry: Registry = register;

/** Metrics kept by the supervising process only. */
export const supervisorRegistry = new Registry();

const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STORE_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1,
];

/**
 * The request metrics of a registry: the duration histogram, kept in typed arrays (src/histogram.ts),
 * and the request counter, whose values are the histogram's counts, set when scraped. A request is
 * observed once, in the histogram, instead of also counted (each prom-client call validates and
 * hashes its labels again, even through a labelled child). Exported for the test that compares
 * their exposition with prom-client's own Histogram and Counter.
 */
export function requestMetrics(registry: Registry) {
  const duration = new TypedHistogram({
    name: 'digestd_http_request_duration_seconds',
    help: 'Time from receiving a request to sending its response, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers: [registry],
  });
  const requests = new Counter({
    name: 'digestd_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, count } of duration.counts()) this.inc(labels, count);
    },
  });
  /** The histogram's child of each label set, found once (labels() builds a key and looks it up). */
  const durations = new Map<string, HistogramSeries>();
  /** Counts one answered request and its duration in seconds. */
  const count = (method: string, route: string, status: number, seconds: number): void => {
    const key = `${method} ${status} ${route}`;
    let series = durations.get(key);
    if (series === undefined) {
      series = duration.labels({ method, route, status: String(status) });
      durations.set(key, series);
    }
    series.observe(seconds);
  };
  return { requests, duration, count };
}

/** The latency histogram of store operations (typed arrays, src/histogram.ts). */
export function storeOperationMetric(registry: Registry) {
  return new TypedHistogram({
    name: 'digestd_store_operation_duration_seconds',
    help: 'Latency of message store operations, by store, operation and outcome (ok or error).',
    labelNames: ['store', 'operation', 'outcome'] as const,
    buckets: STORE_BUCKETS,
    registers: [registry],
  });
}

/**
 * Log lines a process could not write, in the registry that process reports from: the primary's
 * log sink (destination `log`: the file or stdout) and a worker's IPC channel (`ipc`). The
 * aggregated scrape adds them up under one name.
 */
function logLinesDroppedMetric(registry: Registry, destination: 'log' | 'ipc') {
  const counter = new Counter({
    name: 'digestd_log_lines_dropped_total',
    help: 'Log lines dropped because their destination failed or fell behind (log: the file or stdout; ipc: a worker to the primary).',
    labelNames: ['destination'] as const,
    registers: [registry],
  });
  const child = counter.labels({ destination });
  // Present at 0 from the start, so that increase() sees the first drop.
  child.inc(0);
  return child;
}

const request = requestMetrics(workerRegistry);

/** Counters and histograms of a serving process. */
export const metrics = {
  httpRequests: request.requests,
  httpRequestDuration: request.duration,
  storeOperationDuration: storeOperationMetric(workerRegistry),
  storeWriteFailures: new Counter({
    name: 'digestd_store_write_failures_total',
    help:
      'Store writes that failed, by store and reason: insufficient_storage (disk, quota or map full), ' +
      'timeout, too_few_replicas (Redis WAIT), unavailable (any other failure).',
    labelNames: ['store', 'reason'] as const,
    registers: [workerRegistry],
  }),
  cacheHits: new Counter({
    name: 'digestd_cache_hits_total',
    help: 'Reads answered by the in-process cache in front of a remote store.',
    registers: [workerRegistry],
  }),
  cacheMisses: new Counter({
    name: 'digestd_cache_misses_total',
    help: 'Reads the in-process cache passed on to the remote store.',
    registers: [workerRegistry],
  }),
  messagesStored: new Counter({
    name: 'digestd_messages_stored_total',
    help: 'Messages acknowledged as durably stored (a message posted twice counts twice).',
    registers: [workerRegistry],
  }),
  logLinesDropped: logLinesDroppedMetric(workerRegistry, 'ipc'),
  messagesRemoved: new Counter({
    name: 'digestd_messages_removed_total',
    help:
      'Removals (DELETE /messages/<digest>) by outcome: removed (the message was deleted), not_stored ' +
      '(the digest was listed without a message), already_removed.',
    labelNames: ['outcome'] as const,
    registers: [workerRegistry],
  }),
  corruptMessages: new Counter({
    name: 'digestd_corrupt_messages_total',
    help: 'Stored messages that did not hash to their digest when read (never served).',
    registers: [workerRegistry],
  }),
};

/** Counters kept by the supervising (primary) process. */
export const supervisorMetrics = {
  workerRestarts: new Counter({
    name: 'digestd_worker_restarts_total',
    help: 'Workers the supervisor started again after one exited unexpectedly.',
    registers: [supervisorRegistry],
  }),
  workerTimeouts: new Counter({
    name: 'digestd_worker_timeouts_total',
    help: 'Workers killed by the watchdog because their event loop did not answer within --worker-timeout.',
    registers: [supervisorRegistry],
  }),
  certificateExpiry: new Gauge({
    name: 'digestd_tls_certificate_expiry_timestamp_seconds',
    help: 'When the served TLS certificate expires (Unix time); alert well before it.',
    registers: [supervisorRegistry],
  }),
  certificateProvisional: new Gauge({
    name: 'digestd_tls_certificate_provisional',
    help: '1 while the local CA stands in for the ACME certificate not obtained yet, else 0.',
    registers: [supervisorRegistry],
  }),
  acmeOrderFailures: new Counter({
    name: 'digestd_acme_order_failures_total',
    help: 'ACME orders (first certificate or renewal) that failed; the current certificate stays served.',
    registers: [supervisorRegistry],
  }),
  logLinesDropped: logLinesDroppedMetric(supervisorRegistry, 'log'),
  dataFreeBytes: new Gauge({
    name: 'digestd_data_free_bytes',
    help: 'Bytes available to digestd on the file system of the data directory (LMDB grows there), read when scraped.',
    registers: [supervisorRegistry],
    async collect() {
      if (dataDirectory === undefined) return;
      const space = await statfs(dataDirectory).catch(() => undefined);
      if (space !== undefined) this.set(space.bavail * space.bsize);
    },
  }),
};

/** The directory whose free space digestd_data_free_bytes reports; set by the primary at start. */
let dataDirectory: string | undefined;

/** Makes digestd_data_free_bytes report the file system of `directory`. */
export function measureFreeSpaceOf(directory: string): void {
  dataDirectory = directory;
}

/**
 * This process's metrics as Prometheus text: the worker registry plus the supervisor's, added up
 * as the cluster primary adds them (both count dropped log lines under one name).
 */
export async function localMetricsText(): Promise<string> {
  const [worker, supervisor] = await Promise.all([
    workerRegistry.getMetricsAsJSON(),
    supervisorRegistry.getMetricsAsJSON(),
  ]);
  return AggregatorRegistry.aggregate([worker, supervisor]).metrics();
}

let processMetricsCollected = false;

/** Adds prom-client's process metrics (CPU, memory, event-loop lag, GC) to `workerRegistry`; once. */
export function collectProcessMetrics(): void {
  if (processMetricsCollected) return;
  processMetricsCollected = true;
  collectDefaultMetrics({ register: workerRegistry });
}

/** Counts one answered request (digestd_http_requests_total) and its duration in seconds. */
export const countRequest: (method: string, route: string, status: number, seconds: number) => void =
  request.count;
