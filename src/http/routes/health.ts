import type { FastifyPluginCallback } from 'fastify';
import { StoreUnavailable } from '../../errors.js';
import { allowOnly } from './method-not-allowed.js';

/** How long /readyz waits for the store before calling it unavailable. */
const READY_TIMEOUT_MS = 2000;

/** GET /healthz (the process answers) and GET /readyz (the store answers too). */
export const healthRoutes: FastifyPluginCallback = (app, _options, done) => {
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const { store } = app;
    try {
      await withTimeout(store.ping(), READY_TIMEOUT_MS);
      return await reply.send({ status: 'ready', store: store.kind });
    } catch (error) {
      const unavailable =
        error instanceof StoreUnavailable ? error : new StoreUnavailable(undefined, { cause: error });
      app.log.warn({ err: error }, 'readiness check failed');
      return reply
        .code(503)
        .header('retry-after', '1')

        .send({
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

function withTimeout<T>(promise: Promise<T>, milliseconds: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new StoreUnavailable(`The store did not answer within ${milliseconds} ms.`)),
      milliseconds,
    );
    promise.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}
