import type { FastifyPluginCallback } from 'fastify';
import { workerRegistry } from '../../metrics.js';

/** Options of the /metrics route. */
export interface MetricsRouteOptions {
  /** Produces the Prometheus text (this process's, or every worker's through the primary). */
  collect: () => Promise<string>;
}

/** GET /metrics in the Prometheus text format. */
export const metricsRoutes: FastifyPluginCallback<MetricsRouteOptions> = (app, options, done) => {
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        description:
          'Request counts and latencies by route and status, store latency, cache hits and misses, ' +
          'messages stored, corruption, worker restarts and process metrics, summed over all workers.',
        response: { 200: { description: 'Prometheus text format 0.0.4', type: 'string' } },
      },
    },
    async (_request, reply) => {
      const text = await options.collect();
      return reply.type(workerRegistry.contentType).send(text);
    },
  );
  done();
};
