import type { FastifyPluginCallback } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { securityHeaders } from '../answer.js';
import { JSON_MEDIA_TYPE } from '../body.js';

/** The media type Fastify gives a serialized object. */
const FASTIFY_JSON_TYPE = `${JSON_MEDIA_TYPE}; charset=utf-8`;

/** Options of the response headers. */
export interface ResponseHeadersOptions {
  /** The app serves HTTPS: answers also carry Strict-Transport-Security. */
  tls: boolean;
}

/**
 * The headers every answer carries, set in one onSend hook since it runs on every answer:
 * - the security headers;
 * - `application/json` without a charset: RFC 8259 defines no charset parameter (JSON is always
 *   UTF-8), clients of this API compare the media type exactly, and Fastify appends
 *   "; charset=utf-8" to every object it serializes.
 * Answers that skip the onSend hooks (errors found before routing) are given the same headers by
 * the error replies; answers written without Fastify get them from src/http/answer.ts.
 */
const responseHeaders: FastifyPluginCallback<ResponseHeadersOptions> = (app, options, done) => {
  const headers = securityHeaders(options);
  app.addHook('onSend', (_request, reply, payload, hookDone) => {
    void reply.headers(headers);
    if (reply.getHeader('content-type') === FASTIFY_JSON_TYPE)
      void reply.header('content-type', JSON_MEDIA_TYPE);
    hookDone(null, payload);
  });
  done();
};

/** Not encapsulated: the hook covers every route and the not-found handler. */
export default fastifyPlugin(responseHeaders, { name: 'digestd-response-headers', fastify: '5.x' });
