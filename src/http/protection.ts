import { timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import rateLimit, { type RateLimitPluginOptions } from '@fastify/rate-limit';
import underPressurePlugin from '@fastify/under-pressure';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { digestOf } from '../digest.js';
import { InvalidConfig, Overloaded, TooManyRequests, Unauthorized } from '../errors.js';

/** HSTS max-age: one year, without includeSubDomains (other hosts of the domain are not ours to decide). */
const HSTS = 'max-age=31536000';

/** The security headers of every response: X-Content-Type-Options, and HSTS under TLS. */
export function securityHeaders(options: { tls: boolean }): Record<string, string> {
  return options.tls
    ? { 'x-content-type-options': 'nosniff', 'strict-transport-security': HSTS }
    : { 'x-content-type-options': 'nosniff' };
}

/** Adds securityHeaders() to every response that passes through the onSend hooks. */
export function addSecurityHeaders(app: FastifyInstance, options: { tls: boolean }): void {
  const headers = securityHeaders(options);
  app.addHook('onSend', (_request, reply, payload, done) => {
    void reply.headers(headers);
    done(null, payload);
  });
}

const BEARER = /^Bearer[ \t]+([^ \t]+)[ \t]*$/i;

/**
 * Requires `Authorization: Bearer <token>` on routes marked `config: { write: true }` when tokens
 * are given. Tokens are compared as SHA-256 hashes with timingSafeEqual, against every configured
 * token without stopping at the first match, so the time taken says nothing about any token.
 */
export function requireWriteToken(app: FastifyInstance, tokens: readonly string[]): void {
  if (tokens.length === 0) return;
  const hashes = tokens.map((token) => digestOf(token));
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.routeOptions.config.write !== true) {
      done();
      return;
    }
    const presented = BEARER.exec(request.headers.authorization ?? '')?.[1];
    if (presented === undefined) {
      done(new Unauthorized(request.headers.authorization !== undefined));
      return;
    }
    const hash = digestOf(presented);
    let valid = false;
    for (const expected of hashes) valid = timingSafeEqual(hash, expected) || valid;
    done(valid ? undefined : new Unauthorized(true));
  });
}

/**
 * Reads the write tokens of `--write-token-file`: one a line; blank lines and lines starting
 * with # are skipped. A missing or empty file is a configuration error.
 */
export async function readWriteTokenFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidConfig([`--write-token-file: cannot read ${path}: ${(error as Error).message}`]);
  }
  const tokens = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (tokens.length === 0) throw new InvalidConfig([`--write-token-file: ${path} holds no token`]);
  return tokens;
}

/** Routes never limited: probes and scrapes must see an overloaded or busy server. */
const UNLIMITED_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);
const isUnlimited = (request: FastifyRequest) => UNLIMITED_ROUTES.has(request.routeOptions.url ?? '');

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

/** Limits each client address (request.ip) to `max` requests per window; over it answers 429. */
export function limitRate(app: FastifyInstance, options: RateLimitOptions): void {
  void app.register(rateLimit, {
    global: true,
    max: options.max,
    timeWindow: options.windowMs,
    ...(options.redis !== undefined && { redis: options.redis, nameSpace: 'digestd-rate-limit:' }),
    // A rate limiter whose Redis is down should not take the service down with it.
    skipOnError: true,
    allowList: (request) => isUnlimited(request),
    errorResponseBuilder: (_request, context) =>
      new TooManyRequests(Math.max(1, Math.ceil(context.ttl / 1000))),
  });
}

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
 * its limit (@fastify/under-pressure samples both every second). /healthz and /metrics stay open.
 *
 * under-pressure lives in a context of its own with no routes, where it only samples; one cheap
 * check here decides. Its own onRequest hook reads `request.routeOptions` (a new object on each
 * read) for every request before comparing anything: 3.9% of the instructions of a GET hit.
 */
export function shedLoad(app: FastifyInstance, limits: PressureLimits): void {
  let isUnderPressure = () => false;
  void app.register(async (sampler) => {
    await sampler.register(underPressurePlugin, {
      maxEventLoopDelay: limits.maxEventLoopDelayMs,
      maxHeapUsedBytes: limits.maxHeapUsedBytes,
      maxRssBytes: limits.maxRssBytes,
    });
    isUnderPressure = () => sampler.isUnderPressure();
  });
  app.addHook('onRequest', (request, _reply, done) => {
    if (!isUnderPressure()) return done();
    const route = request.routeOptions.url;
    done(
      route === '/healthz' || route === '/metrics'
        ? undefined
        : new Overloaded(OVERLOADED_RETRY_AFTER_SECONDS),
    );
  });
}
