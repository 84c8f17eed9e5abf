import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import { DigestdError, InternalError } from '../errors.js';
import { accessLineWriter, type AccessLineWriter } from '../log/access-line.js';
import type { Logger } from '../log/logger.js';
import { countRequest } from '../metrics.js';
import { JSON_MEDIA_TYPE } from './body.js';

/**
 * The one writer of answers: the status, headers, error body and access record of every answer,
 * whoever gives it: a Fastify reply (the routes, the error and not-found handlers, the health
 * routes), the fast read path (src/http/fast-read.ts) and the connection layer
 * (src/http/connection.ts). Those call it; none of them formats a header block, an error body or
 * an access line of its own. A leaf of the HTTP layer: it imports no plugin, route or server code.
 */

/** HSTS max-age: one year, without includeSubDomains (other hosts of the domain are not ours to decide). */
const HSTS = 'max-age=31536000';

/** A stored message never changes, so any cache may keep it for a year without revalidating. */
export const IMMUTABLE_CACHE_CONTROL = 'public, max-age=31536000, immutable';

/** The security headers of every answer: X-Content-Type-Options, and HSTS under TLS. */
export function securityHeaders(options: { tls: boolean }): Readonly<Record<string, string>> {
  const headers: Record<string, string> = { 'x-content-type-options': 'nosniff' };
  if (options.tls) headers['strict-transport-security'] = HSTS;
  return Object.freeze(headers);
}

/**
 * The `{"err_msg", "code"}` body of an error, after `fields` when given (/readyz puts its status
 * and store first). Nothing else formats an error body.
 */
export function errorBody(error: DigestdError, fields?: Readonly<Record<string, unknown>>): Buffer {
  return Buffer.from(JSON.stringify({ ...fields, err_msg: error.message, code: error.code }));
}

/** What an error thrown while answering is answered as: our own as it is, anything else as a 500. */
export function asAnswerable(error: unknown): DigestdError {
  return error instanceof DigestdError ? error : new InternalError({ cause: error });
}

/**
 * Logs the fault behind a 5xx answer, with its cause, through the request's logger (a 4xx is an
 * answer, not a fault, and is not logged).
 */
export function logFault(requestLog: FastifyBaseLogger, error: unknown, answer: DigestdError): void {
  if (answer.statusCode >= 500) requestLog.error({ err: error }, 'request failed');
}

/** One answered request, as its access line and its metrics see it. */
export interface AnsweredRequest {
  /** The request id (Fastify's); none for an answer written before there was a Fastify request. */
  reqId?: string | undefined;
  /** The request method; `UNKNOWN` when node's parser failed before reading one. */
  method: string;
  /** The request target as sent; empty when node's parser failed before reading one. */
  url: string;
  /** The route pattern (a bounded label for the metrics), `unmatched` when no route took it. */
  route: string;
  status: number;
  /** Bytes of the answer's body. */
  bytes: number;
  /** Time from the request (or, before one was parsed, the connection) to the answer, in ms. */
  ms: number;
  remote: string | undefined;
}

/** The access line writer of each logger, built once (it reads the logger's template pieces). */
const writers = new WeakMap<object, AccessLineWriter>();

function writerOf(log: FastifyBaseLogger): AccessLineWriter {
  let writer = writers.get(log);
  if (writer === undefined) {
    writer = accessLineWriter(log as Logger);
    writers.set(log, writer);
  }
  return writer;
}

/**
 * Writes the access line of an answer and counts it (digestd_http_requests_total and the duration
 * histogram). `log` is the app's logger; the line is the one its child with the request id would
 * write.
 */
export function recordAnswer(log: FastifyBaseLogger, answer: AnsweredRequest): void {
  writerOf(log)({
    reqId: answer.reqId,
    method: answer.method,
    url: answer.url,
    status: answer.status,
    bytes: answer.bytes,
    ms: Number(answer.ms.toFixed(3)),
    remote: answer.remote,
  });
  countRequest(answer.method, answer.route, answer.status, answer.ms / 1000);
}

/**
 * Whether part of the request's body may still be on its way. A request without a body is not
 * `complete` either until node's parser has finished its message, which comes after a handler that
 * answers synchronously (an LMDB read) has already answered.
 */
function mayHaveUnreadBody(request: IncomingMessage): boolean {
  if (request.complete) return false;
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** How an answer to an error differs from the error's own (/readyz's). */
export interface ErrorAnswerOptions {
  /** Fields of the body before `err_msg` and `code`. */
  fields?: Readonly<Record<string, unknown>>;
  /** The status, when not the error's own (/readyz answers 503, or 200 when LMDB only refuses writes). */
  statusCode?: number;
}

/**
 * Answers `error` through a Fastify reply, as `{"err_msg", "code"}` with its status and the
 * headers it carries; the app's onSend hook adds the security headers and the route's onResponse
 * hook the access record.
 */
export function sendError(
  reply: FastifyReply,
  error: DigestdError,
  options?: ErrorAnswerOptions,
): FastifyReply {
  // An error is about this moment (a missing message may be stored a second later): never cache it.
  void reply.headers(error.headers).header('cache-control', 'no-store');
  // A 304 or 200 path may have set validators before failing; they do not describe this error.
  reply.removeHeader('etag');
  // Answered before the body was read whole (a 413, a 401 on a write): the client may still be
  // sending it, so the connection reads and discards the rest rather than resetting under it.
  if (mayHaveUnreadBody(reply.request.raw) && !reply.raw.headersSent) {
    reply.removeHeader('connection');
    keepReadingTheBody(reply.request.raw);
  }
  // Bytes keep the media type exactly as set: Fastify appends a charset to what it serializes.
  const body = errorBody(error, options?.fields);
  void reply.code(options?.statusCode ?? error.statusCode).header('content-type', JSON_MEDIA_TYPE);
  // A HEAD answer has the headers of the GET answer and no body, on every path (the routes' own
  // HEAD handling does not cover the not-found handler).
  if (reply.request.method === 'HEAD') return reply.header('content-length', body.length).send();
  return reply.send(body);
}

/** When node has no request to give the time of, the answer is timed from the connection's start. */
type TimedSocket = Duplex & { [CONNECTED_AT]?: number };
const CONNECTED_AT = Symbol('digestd.connectedAt');

/** Notes when a connection started, for the answers written before node parsed a request on it. */
export function stampConnection(socket: Duplex): void {
  (socket as TimedSocket)[CONNECTED_AT] = performance.now();
}

/** The route pattern of the message reads, the metrics label of the fast path's answers. */
const MESSAGE_ROUTE = '/messages/:digest';

/**
 * The answers written without a Fastify reply, onto node's ServerResponse or straight onto a
 * socket: the fast read path's, and the connection layer's before or instead of a Fastify request.
 * Each has the headers, in the order, that a Fastify reply gives the same answer, and its access
 * record. The header blocks are built once per app; an answer fills in only what varies.
 */
export class NodeAnswers {
  /** After an error's own headers: what every error answer carries, the length last. */
  readonly #errorTail: readonly string[];
  /** The whole head of a 200 read: ETag (index 1) and Content-Length (last) vary. */
  readonly #found: readonly string[];
  readonly #log: FastifyBaseLogger;

  constructor(tls: boolean, log: FastifyBaseLogger) {
    this.#log = log;
    const security = Object.entries(securityHeaders({ tls })).flat();
    this.#errorTail = ['cache-control', 'no-store', 'content-type', JSON_MEDIA_TYPE, ...security];
    this.#found = [
      'etag',
      '',
      'cache-control',
      IMMUTABLE_CACHE_CONTROL,
      'vary',
      'Accept',
      'content-type',
      JSON_MEDIA_TYPE,
      ...security,
      'content-length',
      '',
    ];
  }

  /**
   * A stored message, as GET /messages/:digest answers it in JSON: `hex` is its lowercase digest
   * (its ETag), `started` when the request began (performance.now()).
   */
  message(
    request: IncomingMessage,
    response: ServerResponse,
    reqId: string,
    hex: string,
    message: string,
    started: number,
  ): void {
    const body = JSON.stringify({ message });
    const bytes = Buffer.byteLength(body);
    const head = this.#found.slice();
    head[1] = `"${hex}"`;
    head[head.length - 1] = String(bytes);
    response.writeHead(200, head);
    response.end(body);
    this.#recordRead(request, reqId, 200, bytes, started);
  }

  /** An error answered for GET /messages/:digest on the connection it came on (a 404, a 500). */
  readError(
    request: IncomingMessage,
    response: ServerResponse,
    reqId: string,
    error: DigestdError,
    started: number,
  ): void {
    const body = errorBody(error);
    response.writeHead(error.statusCode, this.#errorHead(error, body.length));
    response.end(body);
    this.#recordRead(request, reqId, error.statusCode, body.length, started);
  }

  /** Refuses a parsed request through its ServerResponse, then closes the connection. */
  refuse(request: IncomingMessage, response: ServerResponse, error: DigestdError): void {
    const started = performance.now();
    const body = errorBody(error);
    response.shouldKeepAlive = false;
    response.writeHead(error.statusCode, this.#errorHead(error, body.length));
    response.end(request.method === 'HEAD' ? undefined : body);
    this.#recordRefusal(error, body.length, performance.now() - started, request, request.socket);
  }

  /** Writes an error straight to a socket that has no ServerResponse, then closes it. */
  refuseOnSocket(socket: Duplex, error: DigestdError, request?: IncomingMessage): void {
    const body = errorBody(error);
    const head = ['connection', 'close', ...this.#errorHead(error, body.length)];
    let text = `HTTP/1.1 ${error.statusCode} ${STATUS_CODES[error.statusCode]}\r\n`;
    for (let index = 0; index < head.length; index += 2) text += `${head[index]}: ${head[index + 1]}\r\n`;
    socket.end(Buffer.concat([Buffer.from(`${text}\r\n`, 'latin1'), body]), () => socket.destroy());
    const connectedAt = (socket as TimedSocket)[CONNECTED_AT];
    this.#recordRefusal(
      error,
      body.length,
      connectedAt === undefined ? 0 : performance.now() - connectedAt,
      request,
      socket,
    );
  }

  #errorHead(error: DigestdError, bytes: number): string[] {
    const head = Object.entries(error.headers).flat();
    head.push(...this.#errorTail, 'content-length', String(bytes));
    return head;
  }

  #recordRead(request: IncomingMessage, reqId: string, status: number, bytes: number, started: number): void {
    recordAnswer(this.#log, {
      reqId,
      method: 'GET',
      url: request.url ?? '',
      route: MESSAGE_ROUTE,
      status,
      bytes,
      ms: performance.now() - started,
      remote: request.socket.remoteAddress,
    });
  }

  #recordRefusal(
    error: DigestdError,
    bytes: number,
    ms: number,
    request: IncomingMessage | undefined,
    socket: Duplex,
  ): void {
    recordAnswer(this.#log, {
      method: request?.method ?? 'UNKNOWN',
      url: request?.url ?? '',
      route: 'unmatched',
      status: error.statusCode,
      bytes,
      ms,
      remote: (socket as Partial<import('node:net').Socket>).remoteAddress,
    });
  }
}

/**
 * Most bytes of an unread body discarded after an early answer before the connection is closed:
 * enough for any body a client sends by mistake, bounded so that nobody streams into the void.
 */
export const DISCARD_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * For an answer sent before its request's body was read whole (a 413 for a body over the limit, a
 * 401 on a write). Fastify marks such answers `Connection: close`, and node then closes the
 * socket with the body still arriving, so the client's kernel gets a reset and a client that
 * writes its whole body before reading (most do) sees EPIPE or ECONNRESET instead of the answer.
 * The caller removes that header, so the connection stays open: node reads and discards the rest
 * of the body (its framing keeps the connection in step) and serves the next request as usual.
 * This closes the connection past DISCARD_LIMIT_BYTES (the request timeout applies too).
 */
function keepReadingTheBody(request: IncomingMessage): void {
  const socket = request.socket;
  let discarded = 0;
  const count = (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARD_LIMIT_BYTES) socket.destroy();
  };
  socket.on('data', count);
  const stop = () => {
    socket.off('data', count);
    request.off('end', stop);
    request.off('close', stop);
  };
  request.once('end', stop);
  request.once('close', stop);
}
