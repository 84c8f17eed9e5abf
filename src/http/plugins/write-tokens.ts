import { timingSafeEqual } from 'node:crypto';
import type { FastifyPluginCallback, onRequestHookHandler } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { digestOf } from '../../digest.js';
import { Unauthorized } from '../../errors.js';

/** Options of the write tokens. */
export interface WriteTokensOptions {
  /** Bearer tokens accepted on writes; none leaves writes open. */
  tokens: readonly string[];
}

const BEARER = /^Bearer[ \t]+([^ \t]+)[ \t]*$/i;

/**
 * Requires `Authorization: Bearer <token>` on routes marked `config: { write: true }` when tokens
 * are given. Tokens are compared as SHA-256 hashes with timingSafeEqual, against every configured
 * token without stopping at the first match, so the time taken says nothing about any token.
 * The check is a hook of the write routes alone, so reads never run it.
 */
const writeTokens: FastifyPluginCallback<WriteTokensOptions> = (app, options, done) => {
  if (options.tokens.length === 0) return done();
  const hashes = options.tokens.map((token) => digestOf(token));
  const requireToken: onRequestHookHandler = (request, _reply, hookDone) => {
    const presented = BEARER.exec(request.headers.authorization ?? '')?.[1];
    if (presented === undefined) {
      hookDone(new Unauthorized(request.headers.authorization !== undefined));
      return;
    }
    const hash = digestOf(presented);
    let valid = false;
    for (const expected of hashes) valid = timingSafeEqual(hash, expected) || valid;
    hookDone(valid ? undefined : new Unauthorized(true));
  };
  app.addHook('onRoute', (route) => {
    if (route.config?.write !== true) return;
    const hooks = route.onRequest;
    route.onRequest = hooks === undefined ? [requireToken] : [hooks, requireToken].flat();
  });
  done();
};

/**
 * Not encapsulated, and registered before the routes: its onRoute hook must see every route.
 * Registered before the rate limit too, so that a refused write is not counted against the client.
 */
export default fastifyPlugin(writeTokens, { name: 'digestd-write-tokens', fastify: '5.x' });

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route writes: it requires a write token when tokens are configured. */
    write?: boolean;
  }
}
