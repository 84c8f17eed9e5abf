import { randomUUID } from 'node:crypto';
import accepts from '@fastify/accepts';
import { fastify, LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Logger } from '../log/logger.js';
import { collectProcessMetrics, instrumentStore, localMetricsText } from '../metrics.js';
import type { MessageStore } from '../store/types.js';
import bodyParsers from './body.js';
import {
  answerClientErrors,
  DEFAULT_CONNECTION_OPTIONS,
  rejectLongUrls,
  serverFactoryFor,
  type ConnectionOptions,
} from './connection.js';
import accessLog from './plugins/access-log.js';
import errorReplies, { answerFrameworkErrors } from './plugins/error-replies.js';
import pressure, { type PressureLimits } from './plugins/pressure.js';
import rateLimit, { type RateLimitOptions } from './plugins/rate-limit.js';
import responseHeaders from './plugins/response-headers.js';
import writeTokens from './plugins/write-tokens.js';
import docs from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { messageRoutes } from './routes/messages.js';
import { metricsRoutes } from './routes/metrics.js';
import { pageRoutes } from './routes/page.js';

/** What the HTTP layer needs; built by `digestd serve` (or a test). */
export interface AppOptions {
  store: MessageStore;
  logger: Logger;
  /** Largest message accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** TLS options passed to node:https; plain HTTP when absent. */
  https?: { cert: string; key: string } | undefined;
  /** Most items in one POST /messages/batch or /messages/lookup. @default 1000 */
  batchMax?: number;
  /** Bearer tokens accepted on writes (POST /messages, /messages/batch); none leaves writes open. */
  writeTokens?: readonly string[];
  /** Per-client rate limit (with an optional ioredis client to share counts); none by default. */
  rateLimit?: RateLimitOptions | undefined;
  /** Event-loop delay and memory limits past which requests answer 503; all off by default. */
  pressure?: PressureLimits;
  /**
   * GET /metrics on this listener: how to produce its text, or false when metrics are served on a
   * separate listener (--metrics-port). @default this process's own metrics
   */
  metrics?: { collect: () => Promise<string> } | false;
  /** Proxies trusted to name the client in X-Forwarded-For (request.ip); none by default. */
  trustProxy?: readonly string[] | undefined;
  /** Timeouts and size limits for connections; DEFAULT_CONNECTION_OPTIONS when absent. */
  connection?: ConnectionOptions | undefined;
}

/** Default of --batch-max. */
export const DEFAULT_BATCH_MAX = 1000;

/** Room for the JSON framing and escapes around a message of the maximum size. */
export function bodyLimitFor(maxMessageBytes: number): number {
  return maxMessageBytes * 2 + 1024;
}

/**
 * Builds the Fastify application: the server options, then one plugin per concern, in the order
 * their hooks must run. It never listens; the caller does.
 */
export function buildApp(options: AppOptions): FastifyInstance {
  const connection = options.connection ?? DEFAULT_CONNECTION_OPTIONS;
  const tls = options.https !== undefined;
  const serverOptions: FastifyServerOptions = {
    loggerInstance: options.logger,
    // The access log plugin writes one line per request instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    // Only the listed proxies may say who the client is (X-Forwarded-For); nobody by default.
    ...(options.trustProxy && options.trustProxy.length > 0 && { trustProxy: [...options.trustProxy] }),
    requestIdHeader: false,
    bodyLimit: bodyLimitFor(options.maxMessageBytes),
    return503OnClosing: true,
    clientErrorHandler: answerClientErrors({ tls }),
    // Long URLs answer 414 in one place (rejectLongUrls below); a long digest is just not found.
    routerOptions: { maxParamLength: connection.maxUrlBytes },
    frameworkErrors: answerFrameworkErrors({
      maxMessageBytes: options.maxMessageBytes,
      maxUrlBytes: connection.maxUrlBytes,
      tls,
    }),
  };
  // node:https.Server handles requests exactly like node:http.Server; building it ourselves keeps
  // one Fastify type for both, leaves the server's TLS context to us (setSecureContext on reload)
  // and applies the connection limits (src/http/connection.ts).
  const app = fastify({
    ...serverOptions,
    serverFactory: serverFactoryFor(options.https, connection, options.logger),
  });
  app.addHook('onRequest', rejectLongUrls(connection.maxUrlBytes));
  // Bodies are checked by hand in the handlers, without coercion and with precise errors; the
  // route schemas describe the API (OpenAPI, response serialization) but never validate or coerce.
  app.setValidatorCompiler(() => () => true);
  collectProcessMetrics();
  app.decorate('store', instrumentStore(options.store));

  void app.register(bodyParsers);
  void app.register(accepts);
  void app.register(responseHeaders, { tls });
  void app.register(accessLog);
  void app.register(errorReplies, { maxMessageBytes: options.maxMessageBytes });
  if (options.pressure) void app.register(pressure, options.pressure);
  void app.register(writeTokens, { tokens: options.writeTokens ?? [] });
  if (options.rateLimit) void app.register(rateLimit, options.rateLimit);
  void app.register(docs);

  void app.register(messageRoutes, {
    maxMessageBytes: options.maxMessageBytes,
    batchMax: options.batchMax ?? DEFAULT_BATCH_MAX,
  });
  void app.register(healthRoutes);
  if (options.metrics !== false) {
    void app.register(metricsRoutes, { collect: options.metrics?.collect ?? localMetricsText });
  }
  void app.register(pageRoutes);
  return app;
}

/** Options of the separate metrics listener. */
export interface MetricsAppOptions {
  logger: Logger;
  collect: () => Promise<string>;
}

/** A Fastify app serving only GET /metrics (for --metrics-port); it never listens. */
export function buildMetricsApp(options: MetricsAppOptions): FastifyInstance {
  const serverOptions: FastifyServerOptions = {
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  };
  const app = fastify(serverOptions);
  void app.register(responseHeaders, { tls: false });
  // It accepts no body, so no message limit applies.
  void app.register(errorReplies, { maxMessageBytes: 0 });
  void app.register(metricsRoutes, { collect: options.collect });
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    store: MessageStore;
  }
}
