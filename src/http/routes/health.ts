import type { FastifyPluginCallback } from 'fastify';
import { InsufficientStorage, NotReady } from '../../errors.js';
import { asStoreUnavailable, withDeadline } from '../../store/deadline.js';
import { sendError } from '../answer.js';
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
    // Not ready is 503 whatever the reason, with the reason's code.
    const unready = { fields: { status: 'unavailable', store: store.kind }, statusCode: 503 };
    const missing = options.notReady?.();
    if (missing !== undefined) return sendError(reply, new NotReady(missing), unready);
    try {
      await withDeadline(store.ping(), options.storeTimeoutMs, store.kind);
      return await reply.send({ status: 'ready', store: store.kind });
    } catch (error) {
      const reason = asStoreUnavailable(error, store.kind);
      // Out of space, the node still serves every read, and no other node holds its LMDB: taken
      // out of a balancer, it would refuse reads too. It stays in, and says why writes fail.
      if (reason instanceof InsufficientStorage) {
        return sendError(reply, reason, {
          fields: { status: 'read-only', store: store.kind },
          statusCode: 200,
        });
      }
      app.log.warn({ err: error }, 'readiness check failed');
      return sendError(reply, reason, unready);
    }
  });

  allowOnly(app, '/healthz', ['GET', 'HEAD']);
  allowOnly(app, '/readyz', ['GET', 'HEAD']);
  done();
};
