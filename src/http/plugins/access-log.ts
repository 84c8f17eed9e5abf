import type { FastifyBaseLogger, FastifyPluginCallback, onResponseHookHandler } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { recordAnswer } from '../answer.js';

/**
 * The onResponse hook writing the access line and counting an answer, for requests of `route`
 * (a route pattern, or `unmatched`).
 */
export function accessLineHook(log: FastifyBaseLogger, route: string): onResponseHookHandler {
  return (request, reply, hookDone) => {
    recordAnswer(log, {
      reqId: request.id,
      method: request.method,
      url: request.url,
      route,
      status: reply.statusCode,
      bytes: Number(reply.getHeader('content-length') ?? 0),
      ms: reply.elapsedTime,
      remote: request.ip,
    });
    hookDone();
  };
}

/**
 * One access line per request and its request metrics, from one onResponse hook per route. The
 * app turns Fastify's own request logging off (two lines per request, without the status and size
 * together). The line is written from a template (src/log/access-line.ts), so request.log's pino
 * child is never made for it.
 *
 * Each route gets its hook as it is declared (onRoute), with its pattern as the metrics label
 * (patterns, not URLs, so the number of label values stays bounded): a hook for every request
 * would read `request.routeOptions`, which builds a new object on each read. Requests no route
 * takes are logged by the not-found handler's context (notFoundReplies, src/http/plugins/error-replies.ts),
 * which is given `accessLineHook(log, 'unmatched')`.
 */
const accessLog: FastifyPluginCallback = (app, _options, done) => {
  const log = app.log;
  app.addHook('onRoute', (route) => {
    // route.url is what request.routeOptions.url reads for this route. For a prefix's "/" route,
    // Fastify also adds the prefix with a slash, without calling onRoute, from the same options:
    // that one gets this hook too, and its routeOptions.url is the prefix, which is route.url here.
    const hook = accessLineHook(log, route.url);
    const hooks = route.onResponse;
    route.onResponse = hooks === undefined ? [hook] : [hooks, hook].flat();
  });
  done();
};

/** Not encapsulated, and registered before the routes: its onRoute hook must see every route. */
export default fastifyPlugin(accessLog, { name: 'digestd-access-log', fastify: '5.x' });
