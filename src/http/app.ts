import { randomUUID } from 'node:crypto';
import {
  fastify,
  LogController,
  type FastifyError,
  type FastifyInstance,
  type FastifyServerOptions,
} from 'fastify';
import accepts from '@fastify/accepts';
import type { Logger } from '../log/logger.js';
import {
  DigestdError,
  InternalError,
  MessageNotFound,
  MethodNotAllowed,
  Overloaded,
  PayloadTooLarge,
  RouteNotFound,
  Unauthorized,
  UnsupportedMediaType,
  UriTooLong,
} from '../errors.js';
import { collectProcessMetrics, countRequest, instrumentStore, localMetricsText } from '../metrics.js';
import type { MessageStore } from '../store/types.js';
import { ACCEPTED_BODY_TYPES, registerBodyParsers, JSON_MEDIA_TYPE } from './body.js';
import {
  answerClientError,
  DEFAULT_CONNECTION_OPTIONS,
  rejectLongUrls,
  serverFactoryFor,
  type ConnectionOptions,
} from './connection.js';
import {
  addSecurityHeaders,
  limitRate,
  securityHeaders,
  requireWriteToken,
  shedLoad,
  type PressureLimits,
  type RateLimitOptions,
} from './protection.js';
import { registerDocs } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { messageRoutes } from './routes/messages.js';
import { metricsRoutes } from './routes/metrics.js';
import { pageRoutes } from './routes/page.js';

const FASTIFY_JSON_TYPE = `${JSON_MEDIA_TYPE}; charset=utf-8`;

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

/** Builds the Fastify application. It never listens; the caller does. */
export function buildApp(options: AppOptions): FastifyInstance {
  const connection = options.connection ?? DEFAULT_CONNECTION_OPTIONS;
  const serverOptions: FastifyServerOptions = {
    loggerInstance: options.logger,
    // One access line per request, written by our onResponse hook instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    // Only the listed proxies may say who the client is (X-Forwarded-For); nobody by default.
    ...(options.trustProxy && options.trustProxy.length > 0 && { trustProxy: [...options.trustProxy] }),
    requestIdHeader: false,
    bodyLimit: bodyLimitFor(options.maxMessageBytes),
    return503OnClosing: true,
    clientErrorHandler: answerClientError,
    // Long URLs answer 414 in one place (rejectLongUrls below); a long digest is just not found.
    routerOptions: { maxParamLength: connection.maxUrlBytes },
    frameworkErrors: (error, request, reply) => {
      // Malformed percent-encoding in the path: for /messages/<digest> that is simply a digest
      // that cannot exist.
      const notFound = request.url.startsWith('/messages/')
        ? new MessageNotFound()
        : new RouteNotFound(request.method, request.url);
      // A path parameter can only pass maxParamLength (= maxUrlBytes) when the URL does too.
      const tooLong = new UriTooLong(connection.maxUrlBytes);
      // This path skips the onSend hooks, so the security headers are set here.
      void sendError(
        reply.headers(securityHeaders({ tls: options.https !== undefined })),
        error.code === 'FST_ERR_BAD_URL'
          ? notFound
          : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? tooLong
            : toDigestdError(error, options.maxMessageBytes),
      );
    },
  };
  // node:https.Server handles requests exactly like node:http.Server; building it ourselves keeps
  // one Fastify type for both, leaves the server's TLS context to us (setSecureContext on reload)
  // and applies the connection limits (src/http/connection.ts).
  const app = fastify({ ...serverOptions, serverFactory: serverFactoryFor(options.https, connection) });
  app.addHook('onRequest', rejectLongUrls(connection.maxUrlBytes));

  // Bodies are checked by hand in the handlers, without coercion and with precise errors; the
  // route schemas describe the API (OpenAPI, response serialization) but never validate or coerce.
  app.setValidatorCompiler(() => () => true);
  collectProcessMetrics();
  app.decorate('store', instrumentStore(options.store));
  registerBodyParsers(app);
  void app.register(accepts);

  // RFC 8259 defines no charset parameter for application/json (it is always UTF-8), and clients
  // of this API compare the media type exactly; Fastify appends "; charset=utf-8" by default.
  // One hook for both, since it runs on every answer: the security headers (nosniff, HSTS under TLS).
  const headers = securityHeaders({ tls: options.https !== undefined });
  app.addHook('onSend', (_request, reply, payload, done) => {
    void reply.headers(headers);
    if (reply.getHeader('content-type') === FASTIFY_JSON_TYPE)
      void reply.header('content-type', JSON_MEDIA_TYPE);
    done(null, payload);
  });

  // The access line and the request metrics, in one hook.
  app.addHook('onResponse', (request, reply, done) => {
    request.log.info(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        bytes: Number(reply.getHeader('content-length') ?? 0),
        ms: Number(reply.elapsedTime.toFixed(3)),
        remote: request.ip,
      },
      'request',
    );
    // Route patterns, not URLs, so the number of label values stays bounded.
    countRequest(
      request.method,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    done();
  });

  handleErrors(app, options.maxMessageBytes);
  const pressure = options.pressure;
  if (pressure && (pressure.maxEventLoopDelayMs || pressure.maxHeapUsedBytes || pressure.maxRssBytes)) {
    shedLoad(app, pressure);
  }
  if (options.rateLimit) limitRate(app, options.rateLimit);
  requireWriteToken(app, options.writeTokens ?? []);
  registerDocs(app);

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
  addSecurityHeaders(app, { tls: false });
  handleErrors(app, 0);
  void app.register(metricsRoutes, { collect: options.collect });
  return app;
}

/** The one place errors become `{"err_msg", "code"}` responses. */
function handleErrors(app: FastifyInstance, maxMessageBytes: number): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = toDigestdError(error, maxMessageBytes);
    if (mapped.statusCode >= 500) request.log.error({ err: error }, 'request failed');
    return sendError(reply, mapped);
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new RouteNotFound(request.method, request.url)),
  );
}

function sendError(reply: import('fastify').FastifyReply, error: DigestdError) {
  if (error instanceof MethodNotAllowed) void reply.header('allow', error.allow.join(', '));
  if (error instanceof Unauthorized) void reply.header('www-authenticate', error.challenge);
  if (error instanceof Overloaded) void reply.header('retry-after', String(error.retryAfterSeconds));
  else if (error.statusCode === 503 && !reply.hasHeader('retry-after')) void reply.header('retry-after', '1');
  // An error is about this moment (a missing message may be stored a second later): never cache it.
  void reply.header('cache-control', 'no-store');
  // A 304 or 200 path may have set validators before failing; they do not describe this error.
  reply.removeHeader('etag');
  const body = { err_msg: error.message, code: error.code };
  void reply.code(error.statusCode).header('content-type', JSON_MEDIA_TYPE);
  // A HEAD answer has the headers of the GET answer and no body, on every path (the routes' own
  // HEAD handling does not cover the not-found handler).
  if (reply.request.method === 'HEAD') {
    return reply.header('content-length', Buffer.byteLength(JSON.stringify(body))).send();
  }
  // A per-reply serializer also keeps Fastify from appending a charset on paths that skip hooks.
  return reply.serializer(JSON.stringify).send(body);
}

/** Maps anything thrown while handling a request to one of our errors; unknown ones become 500. */
export function toDigestdError(error: unknown, maxMessageBytes: number): DigestdError {
  if (error instanceof DigestdError) return error;
  const fastifyError = error as Partial<FastifyError>;
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new PayloadTooLarge(maxMessageBytes);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new UnsupportedMediaType(ACCEPTED_BODY_TYPES);
    default:
      break;
  }
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return new DigestdError(
      fastifyError.message ?? 'Bad request.',
      fastifyError.code?.replace(/^FST_ERR_/, '') ?? 'BAD_REQUEST',
      status,
    );
  }
  return new InternalError({ cause: error });
}

declare module 'fastify' {
  interface FastifyInstance {
    store: MessageStore;
  }
}
