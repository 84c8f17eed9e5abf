import type { FastifyBaseLogger, FastifyPluginCallback } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { countRequest } from '../../metrics.js';

/** One answered request, as its access line and its metrics see it. */
export interface AnsweredRequest {
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

/**
 * Writes the access line of an answer and counts it (digestd_http_requests_total and the duration
 * histogram). Every answer goes through here, whoever wrote it: the Fastify hook below, and the
 * answers the connection layer writes before there is a Fastify request (src/http/connection.ts).
 */
export function recordAnswer(log: FastifyBaseLogger, answer: AnsweredRequest): void {
  log.info(
    {
      method: answer.method,
      url: answer.url,
      status: answer.status,
      bytes: answer.bytes,
      ms: Number(answer.ms.toFixed(3)),
      remote: answer.remote,
    },
    'request',
  );
  countRequest(answer.method, answer.route, answer.status, answer.ms / 1000);
}

/**
 * One access line per request and its request metrics, from a single onResponse hook. The app
 * turns Fastify's own request logging off (two lines per request, without the status and size
 * together).
 */
const accessLog: FastifyPluginCallback = (app, _options, done) => {
  app.addHook('onResponse', (request, reply, hookDone) => {
    recordAnswer(request.log, {
      method: request.method,
      url: request.url,
      // Route patterns, not URLs, so the number of label values stays bounded.
      route: request.routeOptions.url ?? 'unmatched',
      status: reply.statusCode,
      bytes: Number(reply.getHeader('content-length') ?? 0),
      ms: reply.elapsedTime,
      remote: request.ip,
    });
    hookDone();
  });
  done();
};

/** Not encapsulated: the hook covers every route and the not-found handler. */
export default fastifyPlugin(accessLog, { name: 'digestd-access-log', fastify: '5.x' });
