import {
  createServer as createHttpServer,
  STATUS_CODES,
  type RequestListener,
  type ServerResponse,
  type ServerOptions,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyServerFactory, onRequestHookHandler } from 'fastify';
import {
  HeadersTooLarge,
  MalformedRequest,
  RequestTimeout,
  UriTooLong,
  type DigestdError,
} from '../errors.js';

/** Limits that protect the server from slow, idle and oversized clients. */
export interface ConnectionOptions {
  /** Time for the TLS handshake, and again for the request line and headers, in ms. */
  headersTimeoutMs: number;
  /** Time for a whole request, body included, in ms (at least headersTimeoutMs). */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection stays open, in ms. */
  keepAliveTimeoutMs: number;
  /** Largest request line plus headers (node's maxHeaderSize); larger answers 431. */
  maxHeaderBytes: number;
  /** Longest request URL; longer answers 414. */
  maxUrlBytes: number;
  /** Most open connections of this process; 0 means no limit. */
  maxConnections: number;
}

/**
 * TLS 1.3 suites, then Mozilla's "intermediate" TLS 1.2 list without the DHE suites: forward
 * secrecy and AEAD only (no CBC, no RSA key exchange, no SHA-1 MACs).
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** The TLS settings of the HTTPS server, also applied by setSecureContext when they are reloaded. */
export function secureContextOptions(https: { cert: string; key: string }) {
  return {
    cert: https.cert,
    key: https.key,
    minVersion: 'TLSv1.2' as const,
    ciphers: TLS_CIPHERS,
    honorCipherOrder: true,
  };
}

/**
 * Builds the node server for Fastify: HTTPS (TLS 1.2 and 1.3, modern suites) when `https` is
 * given, plain HTTP otherwise, with the connection limits applied.
 */
export function serverFactoryFor(
  https: { cert: string; key: string } | undefined,
  connection: ConnectionOptions,
): FastifyServerFactory {
  const httpOptions: ServerOptions = {
    maxHeaderSize: connection.maxHeaderBytes,
    headersTimeout: connection.headersTimeoutMs,
    requestTimeout: connection.requestTimeoutMs,
    keepAliveTimeout: connection.keepAliveTimeoutMs,
    // Node checks the two timeouts above only this often (30 s by default), so a limit of 10 s
    // could otherwise let a slow client hold its connection for 40 s.
    connectionsCheckingInterval: Math.max(
      50,
      Math.floor(Math.min(connection.headersTimeoutMs, connection.requestTimeoutMs) / 5),
    ),
  };
  return (fastifyHandler) => {
    const handler = oneRequestAtATime(fastifyHandler);
    const server = https
      ? createHttpsServer(
          {
            ...httpOptions,
            ...secureContextOptions(https),
            // A socket that never completes the handshake is not yet an HTTP connection, so the
            // header timeout does not see it; this one does.
            handshakeTimeout: connection.headersTimeoutMs,
          },
          handler,
        )
      : createHttpServer(httpOptions, handler);
    if (connection.maxConnections > 0) limitConnections(server, connection.maxConnections);
    return server;
  };
}

/**
 * Closes, on accept, every connection past `max` open ones. node's own server.maxConnections is
 * not enforced in a node:cluster worker (the primary accepts and hands the sockets over), so the
 * count is kept here, where it holds in both modes.
 */
function limitConnections(server: import('node:net').Server, max: number): void {
  let open = 0;
  server.on('connection', (socket: import('node:net').Socket) => {
    if (open >= max) {
      socket.destroy();
      return;
    }
    open += 1;
    socket.once('close', () => (open -= 1));
  });
}

/**
 * Node starts the handler of every pipelined request as soon as it is parsed, so a GET pipelined
 * behind a POST of the same message could run before the write is durable and answer 404.
 * RFC 9112 (9.3.2) allows parallel processing only when every request is safe; this runs the
 * requests of one connection one after the other, which costs nothing since responses on a
 * connection are sent in order anyway. A handler ends its response only once its work is done
 * (a POST after the write is durable), so a request waits only while the response before it on
 * its connection is unended; a client that waits for each answer, as nearly all do, never waits
 * here and adds no listener. Ordering rests on that: a handler that answered before its work was
 * done (a timeout answering early, say) would let the next request on the connection overtake it.
 * The map keeps each connection's last response until the connection is collected.
 */
function oneRequestAtATime(handler: RequestListener): RequestListener {
  const lastResponse = new WeakMap<object, ServerResponse>();
  return (request, response) => {
    const previous = lastResponse.get(request.socket);
    lastResponse.set(request.socket, response);
    if (previous === undefined || previous.writableEnded) handler(request, response);
    else previous.once('close', () => handler(request, response));
  };
}

/**
 * Fastify's clientErrorHandler: node's HTTP parser failed or timed out before there was a request,
 * so no Fastify reply exists and the error handler in app.ts cannot run. The answer is written to
 * the socket in the same `{"err_msg", "code"}` shape, then the connection is closed.
 */
export function answerClientError(this: FastifyInstance, error: NodeJS.ErrnoException, socket: Duplex) {
  // A reset or destroyed socket has nobody left to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // node:https forwards TLS failures (handshake timeout, plain HTTP on the TLS port, bad records)
  // here too; before a completed handshake there is no HTTP to answer with, only a close.
  const fromHttpParser =
    error.code?.startsWith('HPE_') === true || error.code?.startsWith('ERR_HTTP_') === true;
  if (!fromHttpParser) {
    this.log.debug({ code: error.code }, 'connection failed before HTTP');
    socket.destroy();
    return;
  }
  const answer = clientErrorFor(error);
  this.log.debug({ code: error.code, status: answer.statusCode }, 'client error');
  // Like node's own handler: never write into the middle of a response already on its way.
  const inFlight = (socket as Duplex & { _httpMessage?: { _headerSent?: boolean } })._httpMessage;
  if (!socket.writable || inFlight?._headerSent === true) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ err_msg: answer.message, code: answer.code });
  socket.end(
    `HTTP/1.1 ${answer.statusCode} ${STATUS_CODES[answer.statusCode]}\r\n` +
      'Connection: close\r\n' +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

function clientErrorFor(error: NodeJS.ErrnoException): DigestdError {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new RequestTimeout();
    case 'HPE_HEADER_OVERFLOW':
      return new HeadersTooLarge();
    default:
      return new MalformedRequest();
  }
}

/** An onRequest hook answering 414 for a URL over the limit (node counts the raw bytes). */
export function rejectLongUrls(maxUrlBytes: number): onRequestHookHandler {
  return (request, _reply, done) => {
    done(
      request.raw.url !== undefined && request.raw.url.length > maxUrlBytes
        ? new UriTooLong(maxUrlBytes)
        : undefined,
    );
  };
}
