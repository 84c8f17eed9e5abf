import { isUtf8 } from 'node:buffer';
import type { FastifyPluginCallback } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { InvalidJson, InvalidUtf8, UnsupportedMediaType } from '../errors.js';

export const JSON_MEDIA_TYPE = 'application/json';
export const TEXT_MEDIA_TYPE = 'text/plain';
/** The text type as sent and accepted: always UTF-8. */
export const TEXT_UTF8_TYPE = 'text/plain; charset=utf-8';
/** The body types POST /messages accepts, as named in 415 errors. */
export const ACCEPTED_BODY_TYPES = [JSON_MEDIA_TYPE, TEXT_UTF8_TYPE] as const;

/**
 * The largest request body: room for the JSON framing around a message of the maximum size however
 * it is escaped. `\u0001` spells one byte in six, the worst case, so any message within the limit
 * fits; the message's own size is checked once the body is parsed (messages.body.ts).
 */
export function bodyLimitFor(maxMessageBytes: number): number {
  return maxMessageBytes * 6 + 1024;
}

/** A text/plain body: the message itself, already checked to be UTF-8. */
export class RawMessage {
  constructor(
    readonly text: string,
    /** Size of the body in bytes (the message's UTF-8 length). */
    readonly byteLength: number,
  ) {}
}

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;

/**
 * Replaces Fastify's body parsers with ones that read raw bytes, so that invalid UTF-8 is refused
 * (the default parsers would silently turn it into U+FFFD and store something other than what the
 * client sent):
 * - application/json: parsed as JSON;
 * - text/plain: the body is the message (a charset other than UTF-8 answers 415).
 * Any other content type answers 415.
 */
const bodyParsers: FastifyPluginCallback = (app, _options, next) => {
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
  app.addContentTypeParser(TEXT_MEDIA_TYPE, { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    // No charset means UTF-8 here (US-ASCII, the old default, is a subset of it).
    const charset = CHARSET.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      done(new UnsupportedMediaType(ACCEPTED_BODY_TYPES, `Unsupported charset "${charset}"`), undefined);
      return;
    }
    if (!isUtf8(body)) {
      done(new InvalidUtf8(), undefined);
      return;
    }
    done(null, new RawMessage(body.toString('utf8'), body.length));
  });
  next();
};

/** Not encapsulated: the parsers are the app's own, for every route. */
export default fastifyPlugin(bodyParsers, { name: 'digestd-body-parsers', fastify: '5.x' });
