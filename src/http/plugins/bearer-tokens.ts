import { timingSafeEqual } from 'node:crypto';
import type { FastifyPluginCallback, onRequestHookHandler } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { digestOf, type Digest } from '../../digest.js';
import { Forbidden, RemovalDisabled, Unauthorized, type TokenScope } from '../../errors.js';

/** Options of the bearer tokens. */
export interface BearerTokensOptions {
  /** Bearer tokens accepted on writes; none leaves writes open. */
  writeTokens: readonly string[];
  /** Bearer tokens accepted on removals; none turns removal over HTTP off. */
  adminTokens: readonly string[];
}

const BEARER = /^Bearer[ \t]+([^ \t]+)[ \t]*$/i;

/**
 * Who presented a token, for the log: the first 12 hex digits of its SHA-256 (never the token). An
 * operator finds a token's id with `printf %s "$TOKEN" | sha256sum | cut -c1-12`.
 */
export function tokenIdOf(token: string): string {
  return tokenIdOfHash(digestOf(token));
}

function tokenIdOfHash(hash: Digest): string {
  return hash.toString('hex').slice(0, 12);
}

/** The one of `hashes` that `hash` matches, compared with every one in constant time. */
function matchOf(hash: Digest, hashes: readonly Digest[]): Digest | undefined {
  let found: Digest | undefined;
  for (const expected of hashes) if (timingSafeEqual(hash, expected)) found ??= expected;
  return found;
}

/**
 * Requires `Authorization: Bearer <token>` on the routes marked `config: { write: true }` (when
 * write tokens are given) and `config: { admin: true }` (always: without admin tokens such a
 * route answers that removal over HTTP is off). Tokens are compared as SHA-256 hashes with
 * timingSafeEqual, against every configured token without stopping at the first match, so the
 * time taken says nothing about any token. A write token presented for a removal answers 403
 * (insufficient scope), anything else not an admin token 401. An accepted token's id
 * (tokenIdOf) is on `request.tokenId` for the log. The checks are hooks of the marked routes
 * alone, so reads never run them.
 */
const bearerTokens: FastifyPluginCallback<BearerTokensOptions> = (app, options, done) => {
  const writeHashes = options.writeTokens.map((token) => digestOf(token));
  const adminHashes = options.adminTokens.map((token) => digestOf(token));
  const requireToken =
    (scope: TokenScope, hashes: readonly Digest[], otherScope: readonly Digest[]): onRequestHookHandler =>
    (request, _reply, hookDone) => {
      const presented = BEARER.exec(request.headers.authorization ?? '')?.[1];
      if (presented === undefined) {
        hookDone(new Unauthorized(request.headers.authorization !== undefined, scope));
        return;
      }
      const hash = digestOf(presented);
      const match = matchOf(hash, hashes);
      if (match !== undefined) {
        request.tokenId = tokenIdOfHash(match);
        hookDone();
      } else hookDone(matchOf(hash, otherScope) ? new Forbidden(scope) : new Unauthorized(true, scope));
    };
  const writeHook = writeHashes.length > 0 ? requireToken('write', writeHashes, []) : undefined;
  const adminHook: onRequestHookHandler =
    adminHashes.length > 0
      ? requireToken('admin', adminHashes, writeHashes)
      : (_request, _reply, hookDone) => hookDone(new RemovalDisabled());
  app.decorateRequest('tokenId', undefined);
  app.addHook('onRoute', (route) => {
    const hook =
      route.config?.admin === true ? adminHook : route.config?.write === true ? writeHook : undefined;
    if (hook === undefined) return;
    const hooks = route.onRequest;
    route.onRequest = hooks === undefined ? [hook] : [hooks, hook].flat();
  });
  done();
};

/**
 * Not encapsulated, and registered before the routes: its onRoute hook must see every route.
 * Registered before the rate limit too, so that a refused write is not counted against the client.
 */
export default fastifyPlugin(bearerTokens, { name: 'digestd-bearer-tokens', fastify: '5.x' });

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route writes: it requires a write token when tokens are configured. */
    write?: boolean;
    /** The route removes: it requires an admin token, and is off without any. */
    admin?: boolean;
  }
  interface FastifyRequest {
    /** The id (tokenIdOf) of the bearer token the request was accepted with, if any. */
    tokenId: string | undefined;
  }
}
