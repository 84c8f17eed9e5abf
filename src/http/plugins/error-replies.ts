import type {
  FastifyError,
  FastifyPluginCallback,
  onResponseHookHandler,
  FastifyRequest,
  FastifyServerOptions,
} from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import {
  DigestdError,
  InsufficientStorage,
  MessageNotFound,
  Overloaded,
  PayloadTooLarge,
  RouteNotFound,
  UnsupportedMediaType,
  UriTooLong,
} from '../../errors.js';
import { asAnswerable, logFault, recordAnswer, securityHeaders, sendError } from '../answer.js';
import { ACCEPTED_BODY_TYPES } from '../body.js';

/** Options of the error replies. */
export interface ErrorRepliesOptions {
  /** Largest message accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** Largest request body (Fastify's bodyLimit): named by a 413 for a body over it. */
  bodyLimitBytes: number;
}

/**
 * The error handler of the whole app here, and its not-found handler in notFoundReplies below:
 * each maps what went wrong to one of our errors and answers it through sendError
 * (src/http/answer.ts). A 5xx is logged with its cause; a 4xx is an answer, not a fault.
 */
const errorReplies: FastifyPluginCallback<ErrorRepliesOptions> = (app, options, done) => {
  const warnOverloaded = atMostEvery(OVERLOADED_LOG_INTERVAL_MS);
  const warnOutOfSpace = atMostEvery(OVERLOADED_LOG_INTERVAL_MS);
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = toDigestdError(error, options.bodyLimitBytes);
    // Shedding load is the server working as meant, on every request while it lasts: a warning
    // now and then, without a stack, says so without flooding the log.
    if (mapped instanceof Overloaded) {
      warnOverloaded((suppressed) => request.log.warn({ code: mapped.code, suppressed }, mapped.message));
    } else if (mapped instanceof InsufficientStorage) {
      // So is refusing writes on a full disk, whose log may be on that disk: a line per write
      // would eat the space kept in reserve.
      warnOutOfSpace((suppressed) => request.log.warn({ err: error, suppressed }, 'request failed'));
    } else logFault(request.log, error, mapped);
    return sendError(reply, mapped);
  });
  done();
};

/** Options of the not-found handler. */
export interface NotFoundRepliesOptions {
  /** Run when a request no route takes has been answered (its access line). */
  onResponse?: onResponseHookHandler | undefined;
}

/**
 * The not-found handler (404 ROUTE_NOT_FOUND), in a context of its own so that hooks meant only
 * for requests no route takes can be added to it (Fastify's documented way to augment the 404
 * handler: its context's hooks apply to it). Register it after every plugin that adds hooks for
 * all requests: a context takes the hooks registered before it, so those apply here too.
 */
export const notFoundReplies: FastifyPluginCallback<NotFoundRepliesOptions> = (app, options, done) => {
  if (options.onResponse !== undefined) app.addHook('onResponse', options.onResponse);
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new RouteNotFound(request.method, request.url)),
  );
  done();
};

/** Shortest time between two OVERLOADED (or INSUFFICIENT_STORAGE) warnings; the next one says how many were left out. */
const OVERLOADED_LOG_INTERVAL_MS = 10_000;

/** Runs `log` at most once per interval, passing how many calls it skipped since the last run. */
function atMostEvery(intervalMs: number): (log: (suppressed: number) => void) => void {
  let lastAt = -Infinity;
  let suppressed = 0;
  return (log) => {
    const now = performance.now();
    if (now - lastAt < intervalMs) {
      suppressed += 1;
      return;
    }
    lastAt = now;
    log(suppressed);
    suppressed = 0;
  };
}

/** Not encapsulated: the handlers are the app's own, for every route. */
export default fastifyPlugin(errorReplies, { name: 'digestd-error-replies', fastify: '5.x' });

/** Options of the answers to errors found before routing. */
export interface FrameworkErrorOptions extends ErrorRepliesOptions {
  /** Longest request URL (also the router's maxParamLength). */
  maxUrlBytes: number;
  /** The app serves HTTPS (for the security headers). */
  tls: boolean;
}

/**
 * Fastify's frameworkErrors option: a URL the router cannot take apart. These answers come before
 * any route, so no hook runs for them: the security headers are set here, and the access line and
 * count are written once the answer is sent.
 */
export function answerFrameworkErrors(
  options: FrameworkErrorOptions,
): NonNullable<FastifyServerOptions['frameworkErrors']> {
  const headers = securityHeaders(options);
  return (error, request, reply) => {
    reply.raw.once('finish', () =>
      recordAnswer(request.log, {
        method: request.method,
        url: request.url,
        route: 'unmatched',
        status: reply.statusCode,
        bytes: Number(reply.getHeader('content-length') ?? 0),
        ms: reply.elapsedTime,
        remote: request.ip,
      }),
    );
    void sendError(reply.headers(headers), frameworkErrorFor(error, request, options));
  };
}

function frameworkErrorFor(error: FastifyError, request: FastifyRequest, options: FrameworkErrorOptions) {
  switch (error.code) {
    // Malformed percent-encoding in the path: for /messages/<digest> that is simply a digest that
    // cannot exist.
    case 'FST_ERR_BAD_URL':
      return request.url.startsWith('/messages/')
        ? new MessageNotFound()
        : new RouteNotFound(request.method, request.url);
    // A path parameter can only pass maxParamLength (= maxUrlBytes) when the URL does too.
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new UriTooLong(options.maxUrlBytes);
    default:
      return toDigestdError(error, options.bodyLimitBytes);
  }
}

/**
 * Maps anything thrown while handling a request to one of our errors; unknown ones become 500.
 * `bodyLimitBytes` is named by the 413 of a body over Fastify's bodyLimit.
 */
export function toDigestdError(error: unknown, bodyLimitBytes: number): DigestdError {
  if (error instanceof DigestdError) return error;
  const fastifyError = error as Partial<FastifyError>;
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new PayloadTooLarge(bodyLimitBytes, 'The request body');
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
  return asAnswerable(error);
}
