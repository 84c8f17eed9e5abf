import underPressurePlugin from '@fastify/under-pressure';
import type { FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { Overloaded, UriTooLong } from '../../errors.js';
import { EXEMPT_ROUTES } from './exempt-routes.js';

/** Limits past which the server answers 503; 0 turns a check off. */
export interface PressureLimits {
  maxEventLoopDelayMs: number;
  maxHeapUsedBytes: number;
  maxRssBytes: number;
}

/** Options of the admission checks. */
export interface AdmissionOptions extends PressureLimits {
  /** Longest request URL (node counts the raw bytes); longer answers 414. */
  maxUrlBytes: number;
  /** Given the check of load, for what answers before Fastify (src/http/fast-read.ts). */
  pressure?: { isUnderPressure: () => boolean } | undefined;
}

/** Seconds a client is told to wait when the server is overloaded. */
export const OVERLOADED_RETRY_AFTER_SECONDS = 5;

/**
 * What every request is checked for first, in one onRequest hook (each hook is a step of Fastify's
 * hook runner on every request): a URL over the limit answers 414, then, when the event loop lags
 * or memory passes its limit, 503 with Retry-After instead of queueing (@fastify/under-pressure
 * samples both every second). The exempt routes stay open.
 *
 * under-pressure lives in a context of its own with no routes, where it only samples; one cheap
 * check here decides. Its own onRequest hook reads `request.routeOptions` (a new object on each
 * read) for every request before comparing anything; this hook reads it only under pressure.
 */
const admission: FastifyPluginAsync<AdmissionOptions> = async (app, options) => {
  const { maxUrlBytes } = options;
  let isUnderPressure = () => false;
  if (options.maxEventLoopDelayMs || options.maxHeapUsedBytes || options.maxRssBytes) {
    await app.register(async (sampler) => {
      await sampler.register(underPressurePlugin, {
        maxEventLoopDelay: options.maxEventLoopDelayMs,
        maxHeapUsedBytes: options.maxHeapUsedBytes,
        maxRssBytes: options.maxRssBytes,
      });
      isUnderPressure = () => sampler.isUnderPressure();
    });
  }
  if (options.pressure !== undefined) options.pressure.isUnderPressure = isUnderPressure;
  app.addHook('onRequest', (request, _reply, done) => {
    const url = request.raw.url;
    if (url !== undefined && url.length > maxUrlBytes) return done(new UriTooLong(maxUrlBytes));
    if (!isUnderPressure()) return done();
    done(
      EXEMPT_ROUTES.has(request.routeOptions.url ?? '')
        ? undefined
        : new Overloaded(OVERLOADED_RETRY_AFTER_SECONDS),
    );
  });
};

/** Not encapsulated: the hook covers every route and the not-found handler. */
export default fastifyPlugin(admission, { name: 'digestd-admission', fastify: '5.x' });
