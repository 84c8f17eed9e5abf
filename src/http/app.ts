import { randomUUID } from 'node:crypto';
import {
  fastify,
  LogController,
  type FastifyError,
  type FastifyInstance,
  type FastifyServerOptions,
} from 'fastify';
import type { Logger } from '../log/logger.js';
import {
  BadRequest,
  DigestdError,
  InternalError,
  MessageNotFound,
  MethodNotAllowed,
  PayloadTooLarge,
  RouteNotFound,
  UnsupportedMediaType,
  UriTooLong,
} from '../errors.js';
import type { MessageStore } from '../store/types.js';
import { registerBodyParsers, JSON_MEDIA_TYPE } from './body.js';
import {
  answerClientError,
  DEFAULT_CONNECTION_OPTIONS,
  rejectLongUrls,
  serverFactoryFor,
  type ConnectionOptions,
} from './connection.js';
import { healthRoutes } from './routes/health.js';
import { messageRoutes } from './routes/messages.js';

const FASTIFY_JSON_TYPE = `${JSON_MEDIA_TYPE}; charset=utf-8`;

/** What the HTTP layer needs; built by `digestd serve` (or a test). */
export interface AppOptions {
  store: MessageStore;
  logger: Logger;
  /** Largest message accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** TLS options passed to node:https; plain HTTP when absent. */
  https?: { cert: string; key: string } | undefined;
  /** Timeouts and size limits for connections; DEFAULT_CONNECTION_OPTIONS when absent. */
  connection?: ConnectionOptions | undefined;
}

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
      void sendError(
        reply,
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

  app.decorate('store', options.store);
  registerBodyParsers(app);

  // RFC 8259 defines no charset parameter for application/json (it is always UTF-8), and clients
  // of this API compare the media type exactly; Fastify appends "; charset=utf-8" by default.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (reply.getHeader('content-type') === FASTIFY_JSON_TYPE)
      void reply.header('content-type', JSON_MEDIA_TYPE);
    done(null, payload);
  });

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
    done();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = toDigestdError(error, options.maxMessageBytes);
    if (mapped.statusCode >= 500) request.log.error({ err: error }, 'request failed');
    return sendError(reply, mapped);
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new RouteNotFound(request.method, request.url)),
  );

  void app.register(messageRoutes, { maxMessageBytes: options.maxMessageBytes });
  void app.register(healthRoutes);
  return app;
}

function sendError(reply: import('fastify').FastifyReply, error: DigestdError) {
  if (error instanceof MethodNotAllowed) void reply.header('allow', error.allow.join(', '));
  if (error.statusCode === 503) void reply.header('retry-after', '1');
  // A per-reply serializer also keeps Fastify from appending a charset on paths that skip hooks.
  return reply
    .code(error.statusCode)
    .header('content-type', JSON_MEDIA_TYPE)
    .serializer(JSON.stringify)
    .send({ err_msg: error.message, code: error.code });
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
      return new UnsupportedMediaType([JSON_MEDIA_TYPE]);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new BadRequest('The request body is empty; send {"message": "<string>"}.');
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
