import { randomBytes } from 'node:crypto';
import accepts from '@fastify/accepts';
import { fastify, LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Logger } from '../log/logger.js';
import { lazyChildLogger } from '../log/request-logger.js';
import type { MessageStore } from '../store/types.js';
import bodyParsers, { bodyLimitFor } from './body.js';
import {
  answerClientErrors,
  serverFactoryFor,
  type ConnectionOptions,
  type HttpsOptions,
} from './connection.js';
import { fastRead } from './fast-read.js';
import accessLog, { accessLineHook } from './plugins/access-log.js';
import admission, { type PressureLimits } from './plugins/admission.js';
import errorReplies, { answerFrameworkErrors, notFoundReplies } from './plugins/error-replies.js';
import rateLimit, { type RateLimitOptions } from './plugins/rate-limit.js';
import responseHeaders from './plugins/response-headers.js';
import bearerTokens from './plugins/bearer-tokens.js';
import docs from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { messageRoutes } from './routes/messages.js';
import { metricsRoutes } from './routes/metrics.js';
import { pageRoutes } from './routes/page.js';

/** The HTTP settings of the public listener. */
export interface HttpOptions {
  /** Largest message accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** Most items in one POST /messages/batch or /messages/lookup. */
  batchMax: number;
  /** Most UTF-8 bytes of messages in one lookup's answer. */
  maxAnswerBytes: number;
  /** Proxies trusted to name the client in X-Forwarded-For (request.ip); nobody when absent. */
  trustProxy: readonly string[] | undefined;
}

/** What protects the public listener: write tokens, a per-client rate limit and load shedding. */
export interface ProtectionOptions extends PressureLimits {
  /** Bearer tokens accepted on writes (POST /messages, /messages/batch); none leaves writes open. */
  writeTokens: readonly string[];
  /** Bearer tokens accepted on removals (DELETE /messages/:digest); none turns removal over HTTP off. */
  adminTokens: readonly string[];
  /** Per-client rate limit (with an optional ioredis client to share counts); none when absent. */
  rateLimit: RateLimitOptions | undefined;
}

/** What the HTTP layer needs; built by the composition root (src/server.ts). */
export interface AppOptions {
  /** The store the routes use, already instrumented. */
  store: MessageStore;
  logger: Logger;
  /** TLS options passed to node:https; plain HTTP when absent. */
  https: HttpsOptions | undefined;
  /**
   * Why this node is not ready for public traffic besides its store (e.g. no ACME certificate
   * yet), or undefined when it is: /readyz answers 503 with it.
   */
  notReady?: (() => string | undefined) | undefined;

  http: HttpOptions;
  /** Timeouts and size limits for connections. */
  connection: ConnectionOptions;
  protection: ProtectionOptions;
  /** How long /readyz waits for the store, in ms. */
  storeTimeoutMs: number;
  /**
   * GET /metrics on this listener: how to produce its text, or false when metrics are served on a
   * separate listener.
   */
  metrics: { collect: () => Promise<string> } | false;
  /**
   * Answer plain reads before Fastify (src/http/fast-read.ts) when nothing configured needs
   * Fastify for them (no rate limit, no trusted proxy). @default true
   */
  fastRead?: boolean | undefined;
}

/**
 * Builds the Fastify application: the server options, then one plugin per concern, in the order
 * their hooks must run. It never listens; the caller does.
 */
export function buildApp(options: AppOptions): FastifyInstance {
  const { connection, http, protection } = options;
  const tls = options.https !== undefined;
  const nextRequestId = requestIds();
  const pressure = { isUnderPressure: () => false };
  let closing = false;
  const beforeFastify =
    options.fastRead !== false && protection.rateLimit === undefined && !(http.trustProxy?.length ?? 0)
      ? fastRead({
          store: options.store,
          log: options.logger,
          tls,
          maxUrlBytes: connection.maxUrlBytes,
          nextRequestId,
          open: () => !closing && !pressure.isUnderPressure(),
        })
      : undefined;
  const serverOptions: FastifyServerOptions = {
    loggerInstance: options.logger,
    // The access log plugin writes one line per request instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // request.log makes its pino child only when something logs through it (not the access line).
    childLoggerFactory: (logger, bindings, childOptions) =>
      lazyChildLogger(logger as Logger, bindings, childOptions),
    genReqId: nextRequestId,
    // Only the listed proxies may say who the client is (X-Forwarded-For); nobody by default.
    ...(http.trustProxy && http.trustProxy.length > 0 && { trustProxy: [...http.trustProxy] }),
    requestIdHeader: false,
    bodyLimit: bodyLimitFor(http.maxMessageBytes),
    // The listener is drained before the app closes (drain in src/http/listen.ts), so no request
    // should reach a closing app; one that did would get a real answer in our shape, not
    // Fastify's bare 503 without our headers.
    return503OnClosing: false,
    clientErrorHandler: answerClientErrors({ tls }),
    // Long URLs answer 414 in one place (the admission plugin); a long digest is just not found.
    routerOptions: { maxParamLength: connection.maxUrlBytes },
    frameworkErrors: answerFrameworkErrors({
      maxMessageBytes: http.maxMessageBytes,
      bodyLimitBytes: bodyLimitFor(http.maxMessageBytes),
      maxUrlBytes: connection.maxUrlBytes,
      tls,
    }),
  };
  // node:https.Server handles requests exactly like node:http.Server; building it ourselves keeps
  // one Fastify type for both, leaves the server's TLS context to us (setSecureContext on reload)
  // and applies the connection limits (src/http/connection.ts).
  const app = fastify({
    ...serverOptions,
    serverFactory: serverFactoryFor(options.https, connection, options.logger, beforeFastify),
  });
  // Once the app starts closing, Fastify answers every request itself, as return503OnClosing says.
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // Bodies are checked by hand in the handlers, without coercion and with precise errors; the
  // route schemas describe the API (OpenAPI, response serialization) but never validate or coerce.
  app.setValidatorCompiler(() => () => true);
  app.decorate('store', options.store);

  void app.register(bodyParsers);
  void app.register(accepts);
  void app.register(responseHeaders, { tls });
  void app.register(accessLog);
  void app.register(errorReplies, {
    maxMessageBytes: http.maxMessageBytes,
    bodyLimitBytes: bodyLimitFor(http.maxMessageBytes),
  });
  void app.register(admission, { ...protection, maxUrlBytes: connection.maxUrlBytes, pressure });
  void app.register(bearerTokens, {
    writeTokens: protection.writeTokens,
    adminTokens: protection.adminTokens,
  });
  if (protection.rateLimit) void app.register(rateLimit, protection.rateLimit);
  void app.register(docs);

  void app.register(messageRoutes, {
    maxMessageBytes: http.maxMessageBytes,
    batchMax: http.batchMax,
    maxAnswerBytes: http.maxAnswerBytes,
  });
  void app.register(healthRoutes, { storeTimeoutMs: options.storeTimeoutMs, notReady: options.notReady });
  if (options.metrics !== false) void app.register(metricsRoutes, { collect: options.metrics.collect });
  void app.register(pageRoutes);
  // Last: the not-found handler's context takes the hooks of every plugin above (admission,
  // response headers), and adds the access line of a request no route takes.
  void app.register(notFoundReplies, { onResponse: accessLineHook(options.logger, 'unmatched') });
  return app;
}

/**
 * Request ids (the access line's reqId): a random prefix per process, so that ids from different
 * workers and restarts do not collide, then a counter. randomUUID() per request costs several
 * times as much, for no use here: the ids only need to tell requests apart in the log.
 */
function requestIds(): () => string {
  const prefix = `${randomBytes(6).toString('base64url')}-`;
  let next = 0;
  return () => prefix + (next++).toString(36);
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
    // Drained before it closes, as the public listener is.
    return503OnClosing: false,
  };
  const app = fastify(serverOptions);
  void app.register(responseHeaders, { tls: false });
  // It accepts no body, so no message limit applies.
  void app.register(errorReplies, { maxMessageBytes: 0, bodyLimitBytes: 0 });
  void app.register(metricsRoutes, { collect: options.collect });
  void app.register(notFoundReplies, {});
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    store: MessageStore;
  }
}
