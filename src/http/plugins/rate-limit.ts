import rateLimitPlugin, { type RateLimitPluginOptions } from '@fastify/rate-limit';
import type { FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { TooManyRequests } from '../../errors.js';
import { EXEMPT_ROUTES } from './exempt-routes.js';

/** Options of the per-client rate limit. */
export interface RateLimitOptions {
  /** Requests allowed per client address in each window. */
  max: number;
  /** Window length in milliseconds. */
  windowMs: number;
  /**
   * An ioredis client (`new Redis(...)` or `new Redis.Cluster(...)`): counts are then shared by
   * every process and node using the same Redis. Without it, each process counts on its own.
   */
  redis?: RateLimitPluginOptions['redis'];
}

/**
 * Limits each client address (request.ip) to `max` requests per window; over it answers 429
 * (@fastify/rate-limit, which adds its check to each route as the route is declared).
 */
const rateLimit: FastifyPluginAsync<RateLimitOptions> = async (app, options) => {
  // Runs before the limiter's own onRoute hook, which leaves a route with `rateLimit: false` alone.
  app.addHook('onRoute', (route) => {
    if (EXEMPT_ROUTES.has(route.url)) route.config = { ...route.config, rateLimit: false };
  });
  await app.register(rateLimitPlugin, {
    global: true,
    max: options.max,
    timeWindow: options.windowMs,
    ...(options.redis !== undefined && { redis: options.redis, nameSpace: 'digestd-rate-limit:' }),
    // A rate limiter whose Redis is down should not take the service down with it.
    skipOnError: true,
    errorResponseBuilder: (_request, context) =>
      new TooManyRequests(Math.max(1, Math.ceil(context.ttl / 1000))),
  });
};

/** Not encapsulated, and registered before the routes: its onRoute hooks must see every route. */
export default fastifyPlugin(rateLimit, { name: 'digestd-rate-limit', fastify: '5.x' });
