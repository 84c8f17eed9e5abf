import type { FastifyPluginCallback } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { countRequest } from '../../metrics.js';

/**
 * One access line per request and its request metrics, from a single onResponse hook. The app
 * turns Fastify's own request logging off (two lines per request, without the status and size
 * together).
 */
const accessLog: FastifyPluginCallback = (app, _options, done) => {
  app.addHook('onResponse', (request, reply, hookDone) => {
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
    hookDone();
  });
  done();
};

/** Not encapsulated: the hook covers every route and the not-found handler. */
export default fastifyPlugin(accessLog, { name: 'digestd-access-log', fastify: '5.x' });
