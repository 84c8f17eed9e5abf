import underPressurePlugin from '@fastify/under-pressure';
import type { FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { Overloaded } from '../../errors.js';
import { EXEMPT_ROUTES } from './exempt-routes.js';

/** Limits past which the server answers 503; 0 turns a check off. */
export interface PressureLimits {
  maxEventLoopDelayMs: number;
  maxHeapUsedBytes: number;
  maxRssBytes: number;
}

/** Seconds a client is told to wait when the server is overloaded. */
export const OVERLOADED_RETRY_AFTER_SECONDS = 5;

/**
 * Answers 503 with Retry-After instead of queueing when the event loop lags or memory passes
 * its limit (@fastify/under-pressure samples both every second). The exempt routes stay open.
 *
 * under-pressure lives in a context of its own with no routes, where it only samples; one cheap
 * check here decides. Its own onRequest hook reads `request.routeOptions` (a new object on each
 * read) for every request before comparing anything; this hook reads it only under pressure.
 */
const pressure: FastifyPluginAsync<PressureLimits> = async (app, limits) => {
  if (!limits.maxEventLoopDelayMs && !limits.maxHeapUsedBytes && !limits.maxRssBytes) return;
  let isUnderPressure = () => false;
  await app.register(async (sampler) => {
    await sampler.register(underPressurePlugin, {
      maxEventLoopDelay: limits.maxEventLoopDelayMs,
      maxHeapUsedBytes: limits.maxHeapUsedBytes,
      maxRssBytes: limits.maxRssBytes,
    });
    isUnderPressure = () => sampler.isUnderPressure();
  });
  app.addHook('onRequest', (request, _reply, done) => {
    if (!isUnderPressure()) return done();
    done(
      EXEMPT_ROUTES.has(request.routeOptions.url ?? '')
        ? undefined
        : new Overloaded(OVERLOADED_RETRY_AFTER_SECONDS),
    );
  });
};

/** Not encapsulated: the hook covers every route and the not-found handler. */
export default fastifyPlugin(pressure, { name: 'digestd-pressure', fastify: '5.x' });
