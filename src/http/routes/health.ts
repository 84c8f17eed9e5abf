import type { FastifyPluginCallback } from 'fastify';
import { asStoreUnavailable, withDeadline } from '../../store/deadline.js';
import { allowOnly } from './method-not-allowed.js';

/** Options of the health routes. */
export interface HealthRoutesOptions {
  /** How long /readyz waits for the store before calling it unavailable: any store operation's limit. */
  storeTimeoutMs: number;
  /** A reason this node is not ready besides its store (no ACME certificate yet), or undefined. */
  notReady?: (() => string | undefined) | undefined;
}

/** GET /healthz (the process answers) and GET /readyz (the store answers, and nothing else is missing). */
export const healthRoutes: FastifyPluginCallback<HealthRoutesOptions> = (app, options, done) => {
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const { store } = app;
    const missing = options.notReady?.();
    if (missing !== undefined) {
      return reply.code(503).header('retry-after', '5').header('cache-control', 'no-store').send({
        status: 'unavailable',
        store: store.kind,
        err_msg: missing,
        code: 'NOT_READY',
      });
    }
    try {
      await withDeadline(store.ping(), options.storeTimeoutMs, store.kind);
      return await reply.send({ status: 'ready', store: store.kind });
    } catch (error) {
      const unavailable = asStoreUnavailable(error, store.kind);
      app.log.warn({ err: error }, 'readiness check failed');
      return reply.code(503).header('retry-after', '1').header('cache-control', 'no-store').send({
        status: 'unavailable',
        store: store.kind,
        err_msg: unavailable.message,
        code: unavailable.code,
      });
    }
  });

  allowOnly(app, '/healthz', ['GET', 'HEAD']);
  allowOnly(app, '/readyz', ['GET', 'HEAD']);
  done();
};
