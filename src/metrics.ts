import { Counter, Histogram, Registry, collectDefaultMetrics, register } from 'prom-client';
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

/** Counters and histograms of a serving process. */
export const metrics = {
  httpRequests: new Counter({
    name: 'digestd_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [workerRegistry],
  }),
  httpRequestDuration: new Histogram({
    name: 'digestd_http_request_duration_seconds',
    help: 'Time from receiving a request to sending its response, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers: [workerRegistry],
  }),
  storeOperationDuration: new Histogram({
    name: 'digestd_store_operation_duration_seconds',
    help: 'Latency of message store operations, by store, operation and outcome (ok or error).',
    labelNames: ['store', 'operation', 'outcome'] as const,
    buckets: STORE_BUCKETS,
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

/**
 * The labelled children of the per-request metrics, looked up once per distinct label set:
 * prom-client hashes the label object on every inc/observe otherwise, which showed in profiles.
 */
const requestChildren = new Map<
  string,
  { count: ReturnType<Counter['labels']>; duration: ReturnType<Histogram['labels']> }
>();

/** Counts one answered request and its duration in seconds. */
export function countRequest(method: string, route: string, status: number, seconds: number): void {
  const key = `${method} ${status} ${route}`;
  let children = requestChildren.get(key);
  if (children === undefined) {
    const labels = { method, route, status: String(status) };
    children = {
      count: metrics.httpRequests.labels(labels),
      duration: metrics.httpRequestDuration.labels(labels),
    };
    requestChildren.set(key, children);
  }
  children.count.inc();
  children.duration.observe(seconds);
}

/** Store methods whose latency is measured; others pass through untouched. */
const TIMED_OPERATIONS = ['get', 'getMany', 'has', 'put', 'putMany', 'ping'] as const;

/**
 * Wraps a store so that each operation's latency lands in `digestd_store_operation_duration_seconds`.
 * The timed methods are wrapped once; every other property (methods added to the store contract
 * later included) passes through to the store itself.
 */
export function instrumentStore(store: MessageStore): MessageStore {
  const timed: Record<string, unknown> = {};
  for (const operation of TIMED_OPERATIONS) {
    const methods = store as unknown as Record<string, (...values: unknown[]) => unknown>;
    if (typeof methods[operation] !== 'function') continue;
    const observe = {
      ok: metrics.storeOperationDuration.labels({ store: store.kind, operation, outcome: 'ok' }),
      error: metrics.storeOperationDuration.labels({ store: store.kind, operation, outcome: 'error' }),
    };
    timed[operation] = async (...parameters: unknown[]) => {
      const started = performance.now();
      try {
        // Looked up at each call, so a method replaced on the store later is still the one timed.
        const result: unknown = await methods[operation]!.apply(store, parameters);
        observe.ok.observe((performance.now() - started) / 1000);
        return result;
      } catch (error) {
        observe.error.observe((performance.now() - started) / 1000);
        throw error;
      }
    };
  }
  return new Proxy(store, {
    get(target, property) {
      if (typeof property === 'string' && Object.hasOwn(timed, property)) return timed[property];
      const value: unknown = Reflect.get(target, property);
      // The target as receiver: stores keep state in private fields, which a Proxy cannot reach.
      return typeof value === 'function' ? (value as (...values: unknown[]) => unknown).bind(target) : value;
    },
  });
}
