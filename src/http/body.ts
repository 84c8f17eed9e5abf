import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import { InvalidJson, InvalidUtf8 } from '../errors.js';

export const JSON_MEDIA_TYPE = 'application/json';

/**
 * Replaces Fastify's body parsers with one that reads JSON as raw bytes, so that invalid UTF-8
 * is refused (the default parser would silently turn it into U+FFFD and store something other
 * than what the client sent). Any other content type answers 415.
 */
export function registerBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_MEDIA_TYPE, { parseAs: 'buffer' }, (_request, body: Buffer, done) => {
    if (!isUtf8(body)) {
      done(new InvalidUtf8(), undefined);
      return;
    }
    try {
      done(null, JSON.parse(body.toString('utf8')));
    } catch {
      done(new InvalidJson(), undefined);
    }
  });
}
