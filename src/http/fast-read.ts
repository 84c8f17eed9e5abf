import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import { digestHexOf, parseDigest } from '../digest.js';
import { MessageNotFound } from '../errors.js';
import type { MessageStore } from '../store/types.js';
import { NodeAnswers } from './answer.js';

/** Options of the fast read path. */
export interface FastReadOptions {
  /** The app's store, instrumented; read only while it has a synchronous read (getSync). */
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
 * load). The app builds this only without a rate limit or trusted proxies (their checks and
 * request.ip live in Fastify). Anything else returns false for Fastify to answer, as does a
 * stored entry that does not hash to its digest: the route reads it again (its read is then
 * timed twice), logs and counts the corruption and answers 500.
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
      store.getSync === undefined ||
      !open()
    ) {
      return false;
    }
    const requested = url.slice(PREFIX.length);
    const digest = parseDigest(requested);
    if (digest === undefined) return false;
    const started = performance.now();
    let message: string | undefined;
    try {
      message = store.getSync(digest);
    } catch {
      return false;
    }
    if (message === undefined) {
      answers.readError(request, response, nextRequestId(), NOT_FOUND, started);
      return true;
    }
    // Compared as lowercase hex, which the ETag also carries: no second digest buffer.
    const hex = digestHexOf(message);
    if (hex !== requested.toLowerCase()) return false;
    answers.message(request, response, nextRequestId(), hex, message, started);
    return true;
  };
}
