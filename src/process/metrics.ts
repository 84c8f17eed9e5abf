import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AggregatorRegistry } from 'prom-client';
import { MetricsUnavailable } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { localMetricsText, supervisorRegistry, workerRegistry } from '../metrics.js';
import {
  type MetricsCollectedMessage,
  type MetricsCollectMessage,
  type MetricsScrapedMessage,
  type MetricsScrapeMessage,
} from './protocol.js';

/**
 * Metrics across processes. In a node:cluster deployment every worker counts in its own registry;
 * the primary asks each listening worker for its values over cluster IPC and adds them up with
 * prom-client's AggregatorRegistry.aggregate(), together with its own supervisor metrics.
 * A worker asked for /metrics on the public port forwards the question to the primary.
 *
 * Why not AggregatorRegistry.clusterMetrics(): it asks every connected worker, including one still
 * starting that has no listener yet (the whole scrape then fails after 5 s), and a reply arriving
 * after its timeout throws inside the primary's message handler, which would crash the supervisor.
 * Here only listening workers are asked, and a worker that does not answer in time is left out
 * (and logged) instead of failing the scrape.
 *
 * Wiring: the primary calls `servePrimaryMetrics({ logger })` before forking and hands the workers'
 * metrics messages to its `receive` (the supervisor's dispatcher does); with --metrics-port its
 * `collect` serves the listener (src/server.ts). A worker's dispatcher (process/worker.ts) hands
 * the primary's messages to `answerMetricsCollection` and `receiveScrapedMetrics`, and the public
 * /metrics route uses `metricsText()`, which asks the primary when running as a cluster worker.
 */

const COLLECT: MetricsCollectMessage['type'] = 'digestd:metrics:collect';
const COLLECTED: MetricsCollectedMessage['type'] = 'digestd:metrics:collected';
const SCRAPE: MetricsScrapeMessage['type'] = 'digestd:metrics:scrape';
const SCRAPED: MetricsScrapedMessage['type'] = 'digestd:metrics:scraped';

/** A send on a closed IPC channel calls back with the error instead of emitting it. */
const ignore = () => {};

/** How long the primary waits for one worker's values, and a worker for the primary's answer. */
export const METRICS_TIMEOUT_MS = 3000;

// ---------------------------------------------------------------------------------------------
// Worker side

/**
 * In a cluster worker, the primary asks for this process's metrics: answer with the registry as
 * JSON. Called by the worker's message dispatcher (process/worker.ts).
 */
export function answerMetricsCollection(message: MetricsCollectMessage): void {
  workerRegistry.getMetricsAsJSON().then(
    (metrics) => process.send?.({ type: COLLECTED, id: message.id, metrics }, undefined, {}, ignore),
    (error: unknown) =>
      process.send?.({ type: COLLECTED, id: message.id, error: String(error) }, undefined, {}, ignore),
  );
}

/** Scrapes forwarded to the primary and not yet answered, by id. */
const scrapes = new Map<string, (message: MetricsScrapedMessage) => void>();

/** In a cluster worker, the primary's answer to a forwarded scrape (from the message dispatcher). */
export function receiveScrapedMetrics(message: MetricsScrapedMessage): void {
  scrapes.get(message.id)?.(message);
}

/**
 * The text a /metrics request answers: in a cluster worker, the aggregate of all workers as the
 * primary computes it; in a single process, this process's metrics.
 * Rejects with MetricsUnavailable when the primary does not answer in time.
 */
export function metricsText(timeoutMs = METRICS_TIMEOUT_MS): Promise<string> {
  return cluster.isWorker ? scrapeThroughPrimary(timeoutMs) : localMetricsText();
}

function scrapeThroughPrimary(timeoutMs: number): Promise<string> {
  const id = randomUUID();
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      scrapes.delete(id);
      reject(new MetricsUnavailable({ cause: new Error(`the primary did not answer in ${timeoutMs} ms`) }));
    }, timeoutMs);
    scrapes.set(id, (message) => {
      clearTimeout(timer);
      scrapes.delete(id);
      if (typeof message.text === 'string') resolve(message.text);
      else reject(new MetricsUnavailable({ cause: new Error(message.error ?? 'no metrics') }));
    });
    process.send?.({ type: SCRAPE, id }, undefined, {}, ignore);
  });
}

// ---------------------------------------------------------------------------------------------
// Primary side

/** What servePrimaryMetrics gives the supervisor. */
export interface PrimaryMetrics {
  /** The aggregated Prometheus text of all listening workers plus the supervisor's metrics. */
  collect: () => Promise<string>;
  /** A metrics message from a worker, handed over by the supervisor's message dispatcher. */
  receive: (message: MetricsCollectedMessage | MetricsScrapeMessage, worker: Worker) => void;
  /** Stops following the workers (removes the cluster listeners). */
  close: () => void;
}

/** Options of servePrimaryMetrics. */
export interface PrimaryMetricsOptions {
  logger: Logger;
  /** How long to wait for each worker. @default METRICS_TIMEOUT_MS */
  timeoutMs?: number;
}

/**
 * In the cluster primary: aggregates the workers' metrics on request and answers the scrapes
 * workers forward from the public port. Call it before forking, so that it sees every worker's
 * `listening` event.
 */
export function servePrimaryMetrics(options: PrimaryMetricsOptions): PrimaryMetrics {
  const timeoutMs = options.timeoutMs ?? METRICS_TIMEOUT_MS;
  const listening = new Set<Worker>();
  const pending = new Map<string, (message: MetricsCollectedMessage) => void>();

  const onListening = (worker: Worker) => void listening.add(worker);
  const onExit = (worker: Worker) => void listening.delete(worker);
  const receive = (message: MetricsCollectedMessage | MetricsScrapeMessage, worker: Worker) => {
    if (message.type === COLLECTED) {
      pending.get(message.id)?.(message);
      return;
    }
    collect().then(
      (text) => sendIfConnected(worker, { type: SCRAPED, id: message.id, text }),
      (error: unknown) => sendIfConnected(worker, { type: SCRAPED, id: message.id, error: String(error) }),
    );
  };
  cluster.on('listening', onListening);
  cluster.on('exit', onExit);

  function collectFrom(worker: Worker): Promise<unknown> {
    const id = randomUUID();
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`worker ${worker.process.pid} did not send its metrics within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, (message) => {
        clearTimeout(timer);
        pending.delete(id);
        if (message.error !== undefined) reject(new Error(message.error));
        else resolve(message.metrics);
      });
      if (!sendIfConnected(worker, { type: COLLECT, id })) {
        clearTimeout(timer);
        pending.delete(id);
        reject(new Error(`worker ${worker.process.pid} is disconnected`));
      }
    });
  }

  async function collect(): Promise<string> {
    const results = await Promise.allSettled([...listening].map((worker) => collectFrom(worker)));
    const perWorker: unknown[] = [];
    for (const result of results) {
      if (result.status === 'fulfilled') perWorker.push(result.value);
      else options.logger.warn({ err: result.reason as unknown }, 'metrics of a worker left out');
    }
    const own = await supervisorRegistry.getMetricsAsJSON();
    return AggregatorRegistry.aggregate([...perWorker, own] as object[]).metrics();
  }

  return {
    collect,
    receive,
    close() {
      cluster.off('listening', onListening);
      cluster.off('exit', onExit);
    },
  };
}

function sendIfConnected(worker: Worker, message: MetricsCollectMessage | MetricsScrapedMessage): boolean {
  if (!worker.isConnected()) return false;
  try {
    worker.send(message);
    return true;
  } catch {
    return false;
  }
}
