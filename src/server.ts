import type { HttpsOptions } from './http/connection.js';
import type { FastifyInstance } from 'fastify';
import { adminTokensOf, writeTokensOf } from './config/files.js';
import type { Config } from './config/schema.js';
import { buildApp, buildMetricsApp } from './http/app.js';
import { addressUrl, drain, listen } from './http/listen.js';
import type { Logger } from './log/logger.js';
import { collectProcessMetrics, localMetricsText, metrics } from './metrics.js';
import { formatDigest } from './digest.js';
import { instrumentedStore } from './store/instrumented.js';
import { openSharedRedis, openStore } from './store/open.js';
import type { MessageStore } from './store/types.js';
import { verifiedStore, type Mismatch } from './store/verified.js';

/**
 * The one composition root: configuration -> store, its instrumentation, the app. A cluster
 * worker, the benchmark's single process and the tests' app helper all build their server here,
 * so what they serve is wired the same way.
 */

/** What a server needs besides its configuration: what differs between a worker, a benchmark and a test. */
export interface ServerOptions {
  logger: Logger;
  /** Certificate and key for HTTPS; plain HTTP when absent. */
  https: HttpsOptions | undefined;
  /** Why this node is not ready besides its store (no ACME certificate yet); /readyz answers 503. */
  notReady?: (() => string | undefined) | undefined;
  /**
   * Produces the text of GET /metrics on the public listener (a cluster worker asks its primary
   * for every worker's). Unused when metrics have a listener of their own. @default this process's metrics
   */
  collectMetrics?: () => Promise<string>;
  /**
   * A store already opened and ready, served instead of the configured one (the benchmark maps a
   * smaller LMDB under valgrind). It is closed with the app all the same.
   */
  store?: MessageStore;
  /** Answer plain reads before Fastify (src/http/fast-read.ts) where the configuration allows. @default true */
  fastRead?: boolean;
}

/** A server built from a configuration; it never listens, the caller does. */
export interface Server {
  app: FastifyInstance;
  /** The store as opened, before instrumentation; closed when the app closes. */
  store: MessageStore;
}

/**
 * Opens the configured store and waits until it is ready, then builds the app over it, with each
 * store operation timed and counted and each message read checked against its digest, and the shared rate-limit Redis when the store is Redis.
 * Closing the app closes both. Throws InvalidConfig when a token file cannot be read, and
 * StoreUnavailable when the store cannot be reached.
 */
export async function createServer(config: Config, options: ServerOptions): Promise<Server> {
  const { protection } = config;
  const writeTokens = await writeTokensOf(protection);
  const adminTokens = await adminTokensOf(protection);
  const store =
    options.store ??
    (await openStore(
      { ...config.store, logger: options.logger },
      { hits: metrics.cacheHits, misses: metrics.cacheMisses },
    ));
  let sharedRedis: Awaited<ReturnType<typeof openSharedRedis>>;
  try {
    await store.ready();
    // With a Redis store, every node counts a client's requests in that Redis.
    sharedRedis = protection.rateLimit ? await openSharedRedis(config.store) : undefined;
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
  collectProcessMetrics();
  const app = buildApp({
    store: verifiedStore(
      instrumentedStore(store, {
        operationDuration: metrics.storeOperationDuration,
        messagesStored: metrics.messagesStored,
        writeFailures: metrics.storeWriteFailures,
      }),
      { onMismatch: (mismatch) => reportCorruption(options.logger, mismatch) },
    ),
    logger: options.logger,
    https: options.https,
    notReady: options.notReady,
    http: config.http,
    connection: config.connection,
    protection: {
      ...protection,
      writeTokens,
      adminTokens,
      rateLimit: protection.rateLimit && { ...protection.rateLimit, redis: sharedRedis },
    },
    storeTimeoutMs: config.store.timeoutMs,
    fastRead: options.fastRead,
    // With a metrics port of its own, /metrics is served there instead.
    metrics:
      config.metrics.port === undefined ? { collect: options.collectMetrics ?? localMetricsText } : false,
  });
  app.addHook('onClose', async () => {
    sharedRedis?.disconnect();
    await store.close();
  });
  return { app, store };
}

/**
 * A stored message that does not hash to its digest is never served (the verified store answers
 * 500 CORRUPT); it is logged with both digests and counted in digestd_corrupt_messages_total.
 */
function reportCorruption(logger: Logger, mismatch: Mismatch): void {
  metrics.corruptMessages.inc();
  logger.error(
    {
      digest: formatDigest(mismatch.digest),
      actualDigest: formatDigest(mismatch.actual),
      store: mismatch.store,
      bytes: Buffer.byteLength(mismatch.message, 'utf8'),
    },
    'corruption: a stored message does not hash to its digest; refusing to serve it',
  );
}

/** A running metrics listener. */
export interface MetricsListener {
  address: string;
  close(): Promise<void>;
}

/** Options of startMetricsListener. */
export interface MetricsListenerOptions {
  host: string;
  port: number;
  logger: Logger;
  /** Produces the Prometheus text (in the primary: every worker's, aggregated). */
  collect: () => Promise<string>;
  /** How long close() waits for scrapes under way, in ms. */
  shutdownTimeoutMs: number;
}

/**
 * Serves GET /metrics over plain HTTP on its own address (meant for localhost or a private
 * network; the public listener then has no /metrics). Resolves with the bound address.
 */
export async function startMetricsListener(options: MetricsListenerOptions): Promise<MetricsListener> {
  const app = buildMetricsApp({ logger: options.logger, collect: options.collect });
  const address = addressUrl(await listen(app, { host: options.host, port: options.port }), false);
  options.logger.info(`metrics at ${address}`);
  return { address, close: () => drain(app, { timeoutMs: options.shutdownTimeoutMs }) };
}
