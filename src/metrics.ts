import { Counter, Histogram, Registry, collectDefaultMetrics, register } from 'prom-client';
import type { Digest } from './digest.js';
import { InsufficientStorage, StoreUnavailable } from './errors.js';
import type { MessageStore } from './store/types.js';

/**
 * The Prometheus metrics of digestd (prom-client). Any module may import `metrics` and count:
 * the HTTP layer counts requests, the store wrapper times operations, a cache layer counts
 * `metrics.cacheHits` / `metrics.cacheMisses`, the supervisor counts `supervisorMetrics.workerRestarts`.
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

const httpRequestDuration = new Histogram({
  name: 'digestd_http_request_duration_seconds',
  help: 'Time from receiving a request to sending its response, by method, route pattern and status.',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: HTTP_BUCKETS,
  registers: [workerRegistry],
});

/** Counters and histograms of a serving process. */
export const metrics = {
  /**
   * The duration histogram's count for each label set, read when scraped: a request is observed
   * once, in the histogram, instead of also counted here (each prom-client call validates and
   * hashes its labels again, even through a labelled child).
   */
  httpRequests: new Counter({
    name: 'digestd_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [workerRegistry],
    async collect() {
      const { values } = await httpRequestDuration.get();
      this.reset();
      for (const { metricName, labels, value } of values) {
        if (metricName === 'digestd_http_request_duration_seconds_count') this.inc(labels, value);
      }
    },
  }),
  httpRequestDuration,
  storeOperationDuration: new Histogram({
    name: 'digestd_store_operation_duration_seconds',
    help: 'Latency of message store operations, by store, operation and outcome (ok or error).',
    labelNames: ['store', 'operation', 'outcome'] as const,
    buckets: STORE_BUCKETS,
    registers: [workerRegistry],
  }),
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
};

/** This process's metrics as Prometheus text: the worker registry plus the supervisor's. */
export function localMetricsText(): Promise<string> {
  return Registry.merge([workerRegistry, supervisorRegistry]).metrics();
}

let processMetricsCollected = false;

/** Adds prom-client's process metrics (CPU, memory, event-loop lag, GC) to `workerRegistry`; once. */
export function collectProcessMetrics(): void {
  if (processMetricsCollected) return;
  processMetricsCollected = true;
  collectDefaultMetrics({ register: workerRegistry });
}

/** The histogram's labelled child of each label set, built once (labels() validates and allocates). */
const requestDurations = new Map<string, ReturnType<Histogram['labels']>>();

/** Counts one answered request (digestd_http_requests_total) and its duration in seconds. */
export function countRequest(method: string, route: string, status: number, seconds: number): void {
  const key = `${method} ${status} ${route}`;
  let duration = requestDurations.get(key);
  if (duration === undefined) {
    duration = httpRequestDuration.labels({ method, route, status: String(status) });
    requestDurations.set(key, duration);
  }
  duration.observe(seconds);
}

type StoreTimer = ReturnType<Histogram['labels']>;

/** Observes how long a store operation took, in `ok` or `error`, and passes its outcome on. */
async function timed<T>(timers: { ok: StoreTimer; error: StoreTimer }, run: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    const result = await run();
    timers.ok.observe((performance.now() - started) / 1000);
    return result;
  } catch (error) {
    timers.error.observe((performance.now() - started) / 1000);
    throw error;
  }
}

/**
 * A store whose operations' latencies land in `digestd_store_operation_duration_seconds`. A plain
 * class rather than a Proxy: no trap on every property read of the hot path, and implementing
 * the contract makes TypeScript name any method added to it later. Methods are looked up on the
 * store at each call, so one replaced later (a test's spy) is still the one timed.
 */
class TimedStore implements MessageStore {
  readonly kind: string;
  readonly #store: MessageStore;
  readonly #timers: Record<'get' | 'has' | 'put' | 'putMany' | 'ping', { ok: StoreTimer; error: StoreTimer }>;

  constructor(store: MessageStore) {
    this.kind = store.kind;
    this.#store = store;
    const timers = (operation: string) => ({
      ok: metrics.storeOperationDuration.labels({ store: store.kind, operation, outcome: 'ok' }),
      error: metrics.storeOperationDuration.labels({ store: store.kind, operation, outcome: 'error' }),
    });
    this.#timers = {
      get: timers('get'),
      has: timers('has'),
      put: timers('put'),
      putMany: timers('putMany'),
      ping: timers('ping'),
    };
  }

  get(digest: Digest): Promise<string | undefined> {
    return timed(this.#timers.get, () => this.#store.get(digest));
  }

  has(digest: Digest): Promise<boolean> {
    return timed(this.#timers.has, () => this.#store.has(digest));
  }

  put(digest: Digest, message: string): Promise<void> {
    return this.#countFailure(timed(this.#timers.put, () => this.#store.put(digest, message)));
  }

  putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    return this.#countFailure(timed(this.#timers.putMany, () => this.#store.putMany(entries)));
  }

  /** Counts a failed write in `digestd_store_write_failures_total` by its reason, and passes it on. */
  async #countFailure(write: Promise<void>): Promise<void> {
    try {
      await write;
    } catch (error) {
      metrics.storeWriteFailures.inc({ store: this.kind, reason: writeFailureReason(error) });
      throw error;
    }
  }

  ping(): Promise<void> {
    return timed(this.#timers.ping, () => this.#store.ping());
  }

  ready(): Promise<void> {
    return this.#store.ready();
  }

  entries(): AsyncIterable<readonly [Digest, string]> {
    return this.#store.entries();
  }

  count(): Promise<number | undefined> {
    return this.#store.count();
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

/** The `reason` label of a failed write. */
function writeFailureReason(error: unknown): string {
  if (error instanceof InsufficientStorage) return 'insufficient_storage';
  if (error instanceof StoreUnavailable) return error.reason;
  return 'unavailable';
}

/** Wraps a store so that each operation's latency lands in `digestd_store_operation_duration_seconds`. */
export function instrumentStore(store: MessageStore): MessageStore {
  return new TimedStore(store);
}
