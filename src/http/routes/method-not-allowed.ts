import type { FastifyInstance, HTTPMethods } from 'fastify';
import { MethodNotAllowed } from '../../errors.js';

const METHODS: readonly HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Answers 405 with `Allow` for every method a known route does not serve. */
export function allowOnly(app: FastifyInstance, url: string, allowed: readonly HTTPMethods[]): void {
  const others = METHODS.filter((method) => !allowed.includes(method));
  app.route({
    method: others,
    url,
    // Not part of the API: left out of the OpenAPI document.
    schema: { hide: true },
    handler: (request) => {
      throw new MethodNotAllowed(request.method, allowed);
    },
  });
}
