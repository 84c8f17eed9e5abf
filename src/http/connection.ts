import { constants as cryptoConstants } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type RequestListener,
  type ServerResponse,
  type ServerOptions,
} from 'node:http';
import { createServer as createHttpsServer, Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance, FastifyServerFactory } from 'fastify';
import {
  BadRequest,
  ExpectationFailed,
  HeadersTooLarge,
  MalformedRequest,
  MethodNotAllowed,
  RequestTimeout,
  UnsupportedTransferCoding,
  type DigestdError,
} from '../errors.js';
import { NodeAnswers, stampConnection } from './answer.js';

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

/** The served certificate, and server options such as the tls-alpn-01 routing (ALPN and SNI callbacks). */
export interface HttpsOptions {
  cert: string;
  key: string;
  serverOptions?: Pick<import('node:tls').TlsOptions, 'ALPNCallback' | 'SNICallback'> | undefined;
}

/** The TLS settings of the HTTPS server, also applied by setSecureContext when they are reloaded. */
export function secureContextOptions(https: { cert: string; key: string }) {
  return {
    cert: https.cert,
    key: https.key,
    minVersion: 'TLSv1.2' as const,
    ciphers: TLS_CIPHERS,
    honorCipherOrder: true,
    // A TLS 1.2 client may ask for a new handshake on an open connection; each costs the server
    // far more CPU than the client, so, as nginx does, none is taken (TLS 1.3 has no renegotiation).
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
  };
}

/**
 * Builds the node server for Fastify: HTTPS (TLS 1.2 and 1.3, modern suites) when `https` is
 * given, plain HTTP otherwise, with the connection limits applied. Requests Fastify must never
 * see (CONNECT, unsupported framing, a missing or doubled Host, an unmet Expect) are answered
 * here, in the same shape and with the same headers, access line and count as every other answer.
 */
export function serverFactoryFor(
  https: HttpsOptions | undefined,
  connection: ConnectionOptions,
  log: FastifyBaseLogger,
  /** Answers what it can before Fastify (src/http/fast-read.ts); returns false for the rest. */
  beforeFastify?: (request: IncomingMessage, response: ServerResponse) => boolean,
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
    // Node's own answer to a missing Host is a bare 400; refuseMalformed answers it in our shape.
    requireHostHeader: false,
  };
  const answers = new NodeAnswers(https !== undefined, log);
  return (fastifyHandler) => {
    const handler = oneRequestAtATime((request, response) => {
      const refusal = refusalOf(request);
      if (refusal !== undefined) answers.refuse(request, response, refusal);
      else if (beforeFastify === undefined || !beforeFastify(request, response))
        fastifyHandler(request, response);
    });
    const server = https
      ? createHttpsServer(
          {
            ...httpOptions,
            ...secureContextOptions(https),
            ...https.serverOptions,
            // A socket that never completes the handshake is not yet an HTTP connection, so the
            // header timeout does not see it; this one does.
            handshakeTimeout: connection.headersTimeoutMs,
          },
          handler,
        )
      : createHttpServer(httpOptions, handler);
    if (connection.maxConnections > 0) limitConnections(server, connection.maxConnections);
    watch(server, answers);
    return server;
  };
}

/** The event that hands over a connection's request socket: for HTTPS the TLS socket, once its handshake is done. */
export function connectionEventOf(server: import('node:net').Server): 'secureConnection' | 'connection' {
  return server instanceof HttpsServer ? 'secureConnection' : 'connection';
}

/** The methods the API serves, named by the 405 that answers CONNECT. */
const SERVED_METHODS = ['GET', 'HEAD', 'POST'] as const;

/** An absolute-form request target (RFC 9112 3.2.2), which a server must accept. */
const ABSOLUTE_FORM = /^https?:\/\//i;

/**
 * Why a parsed request is refused before Fastify sees it, or undefined when it is not. These are
 * requests node's parser accepts but whose meaning is ambiguous or unsupported: answering them as
 * if they were plain would store or serve something other than what the client meant.
 */
function refusalOf(request: IncomingMessage): DigestdError | undefined {
  const url = request.url ?? '';
  if (!url.startsWith('/') && !ABSOLUTE_FORM.test(url)) {
    return new BadRequest('The request target must be a path starting with "/".');
  }
  let hosts = 0;
  for (let index = 0; index < request.rawHeaders.length; index += 2) {
    if (request.rawHeaders[index]!.toLowerCase() === 'host') hosts += 1;
  }
  // RFC 9112 3.2: a request with no Host, or more than one, gets 400.
  if (hosts > 1) return new BadRequest('The request has more than one Host header.');
  if (hosts === 0 && request.httpVersion === '1.1') {
    return new BadRequest('The request has no Host header, which HTTP/1.1 requires.');
  }
  // node de-chunks "gzip, chunked" and passes on the gzip bytes as if they were the body.
  const coding = request.headers['transfer-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') {
    return new UnsupportedTransferCoding(coding);
  }
  return undefined;
}

/**
 * Answers CONNECT and unmet expectations, and times connections for the parser's errors, through
 * the one writer of answers.
 */
function watch(server: import('node:net').Server, answers: NodeAnswers): void {
  server.on(connectionEventOf(server), stampConnection);
  // Without a listener node destroys a CONNECT's socket without a word.
  server.on('connect', (request: IncomingMessage, socket: Duplex) => {
    const error = new MethodNotAllowed(request.method ?? 'CONNECT', SERVED_METHODS);
    answers.refuseOnSocket(socket, error, request);
  });
  // Without a listener node answers a bare 417.
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    answers.refuse(request, response, new ExpectationFailed(String(request.headers.expect)));
  });
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

/** The last response of a connection, on its socket. */
const LAST_RESPONSE = Symbol('digestd.lastResponse');

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
 * Each connection's last response is kept on its socket (a property read is cheaper than a
 * WeakMap lookup on every request) and goes with it.
 */
function oneRequestAtATime(handler: RequestListener): RequestListener {
  return (request, response) => {
    const socket = request.socket as Duplex & { [LAST_RESPONSE]?: ServerResponse };
    const previous = socket[LAST_RESPONSE];
    socket[LAST_RESPONSE] = response;
    if (previous === undefined || previous.writableEnded) handler(request, response);
    else previous.once('close', () => handler(request, response));
  };
}

/**
 * Fastify's clientErrorHandler: node's HTTP parser failed or timed out before there was a request,
 * so no Fastify reply exists and the error handler in app.ts cannot run. The answer is written to
 * the socket in the same `{"err_msg", "code"}` shape, with the same headers, access line and
 * count as every answer, then the connection is closed.
 */
export function answerClientErrors(options: { tls: boolean }) {
  let answers: NodeAnswers | undefined;
  return function answerClientError(this: FastifyInstance, error: NodeJS.ErrnoException, socket: Duplex) {
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
    answers ??= new NodeAnswers(options.tls, this.log);
    answers.refuseOnSocket(socket, answer);
  };
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
