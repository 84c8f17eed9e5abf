import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
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
 * Why a body cannot be read as its headers describe it, or undefined: a charset other than UTF-8
 * (none means UTF-8: JSON has no other, and US-ASCII, text's old default, is a subset of it), or
 * a Content-Encoding other than identity. A compressed body is refused rather than inflated: the
 * body limit would otherwise have to bound what it inflates to, and a compression bomb costs the
 * server the whole decoding before any limit could see it.
 */
function unreadableBody(headers: IncomingHttpHeaders): UnsupportedMediaType | undefined {
  const encoding = headers['content-encoding']?.trim().toLowerCase();
  if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
    return new UnsupportedMediaType(
      ACCEPTED_BODY_TYPES,
      `Unsupported Content-Encoding "${encoding}" (only identity is read)`,
      'send the body uncompressed, as',
    );
  }
  const charset = CHARSET.exec(headers['content-type'] ?? '')?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    return new UnsupportedMediaType(ACCEPTED_BODY_TYPES, `Unsupported charset "${charset}"`);
  }
  return undefined;
}

/**
 * Replaces Fastify's body parsers with ones that read raw bytes, so that invalid UTF-8 is refused
 * (the default parsers would silently turn it into U+FFFD and store something other than what the
 * client sent):
 * - application/json: parsed as JSON;
 * - text/plain: the body is the message;
 * a charset other than UTF-8 or a Content-Encoding other than identity answers 415.
 * Any other content type answers 415.
 */
const bodyParsers: FastifyPluginCallback = (app, _options, next) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_MEDIA_TYPE, { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    const refusal = unreadableBody(request.headers);
    if (refusal !== undefined) {
      done(refusal, undefined);
      return;
    }
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
    const refusal = unreadableBody(request.headers);
    if (refusal !== undefined) {
      done(refusal, undefined);
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
