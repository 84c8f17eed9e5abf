import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import { parseDigest } from '../digest.js';
import { MessageNotFound, MessageRemoved } from '../errors.js';
import { MUST_WAIT, REMOVED, type MessageStore, type MustWait, type Removed } from '../store/types.js';
import { asAnswerable, logFault, NodeAnswers } from './answer.js';

/** Options of the fast read path. */
export interface FastReadOptions {
  /** The app's store, verified and instrumented; read with getSync, which may say MUST_WAIT. */
  store: MessageStore;
  /** The app's logger: the access line is the one the Fastify route writes. */
  log: FastifyBaseLogger;
  /** The app serves HTTPS (HSTS). */
  tls: boolean;
  /** Longest request URL; a longer one is Fastify's to refuse. */
  maxUrlBytes: number;
  /** The app's request ids (Fastify's genReqId), so that ids stay unique across both paths. */
  nextRequestId: () => string;
  /** False while Fastify must answer every request itself: shutting down, or shedding load. */
  open: () => boolean;
}

/** Answers a request and returns true, or returns false having written nothing. */
export type FastRead = (request: IncomingMessage, response: ServerResponse) => boolean;

const PREFIX = '/messages/';
const NOT_FOUND = new MessageNotFound();
const GONE = new MessageRemoved();

/**
 * The most frequent request, a plain `GET /messages/<64 hex digits>`, answered before Fastify:
 * the same status, headers (in the same order) and body as the Fastify route
 * (src/http/routes/messages.ts with the app's hooks), the same access line and the same metrics
 * (the request counted and timed under its route pattern, the store read timed), without the
 * routing, request and reply objects and hook runs that are most of what such a read costs in
 * Fastify.
 *
 * Only a request the route would answer without any other consideration is taken here: GET (not
 * HEAD), the path and nothing else (no query), no body, no If-None-Match (304s need has()), no
 * `text/` in Accept (content negotiation), while the app is open (not shutting down, not shedding
 * load), and only when the store has the answer at hand (getSync: LMDB, a cache hit; MUST_WAIT
 * otherwise). The app builds this only without a rate limit or trusted proxies (their checks and
 * request.ip live in Fastify). Anything else returns false for Fastify to answer. A read that
 * fails (a corrupt entry included) is answered here as the error handler answers it.
 *
 * test/unit/http/fast-read.test.ts sends the same random requests to an app with and without this
 * path and requires the same answers, byte for byte, the same log fields and the same counts.
 */
export function fastRead(options: FastReadOptions): FastRead {
  const { store, log, maxUrlBytes, nextRequestId, open } = options;
  const answers = new NodeAnswers(options.tls, log);
  const fullLength = PREFIX.length + 64;
  if (fullLength > maxUrlBytes) return () => false;
  return (request, response) => {
    const url = request.url;
    const headers = request.headers;
    if (
      request.method !== 'GET' ||
      url === undefined ||
      url.length !== fullLength ||
      !url.startsWith(PREFIX) ||
      headers['if-none-match'] !== undefined ||
      headers['content-length'] !== undefined ||
      headers['transfer-encoding'] !== undefined ||
      (headers.accept !== undefined && headers.accept.includes('text/')) ||
      !open()
    ) {
      return false;
    }
    const requested = url.slice(PREFIX.length);
    const digest = parseDigest(requested);
    if (digest === undefined) return false;
    const started = performance.now();
    let message: string | undefined | Removed | MustWait;
    try {
      message = store.getSync(digest);
    } catch (error) {
      // A corrupt entry (the verified store has logged and counted it) or a failed read: answered
      // here as the route's error handler answers it, so the entry is not read a second time.
      const reqId = nextRequestId();
      const answer = asAnswerable(error);
      logFault(log.child({ reqId }), error, answer);
      answers.readError(request, response, reqId, answer, started);
      return true;
    }
    if (message === MUST_WAIT) return false;
    if (message === undefined) answers.readError(request, response, nextRequestId(), NOT_FOUND, started);
    else if (message === REMOVED) answers.readError(request, response, nextRequestId(), GONE, started);
    // The verified store has checked that the message hashes to its digest, the ETag's hex.
    else answers.message(request, response, nextRequestId(), requested.toLowerCase(), message, started);
    return true;
  };
}
