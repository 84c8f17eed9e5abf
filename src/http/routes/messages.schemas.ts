import { JSON_MEDIA_TYPE, TEXT_UTF8_TYPE } from '../body.js';

/**
 * The OpenAPI description of the message routes. Fastify serializes answers with these response
 * schemas and @fastify/swagger publishes them; they never validate a request (the handlers check
 * bodies themselves, without coercion).
 */

const errorReply = {
  type: 'object',
  properties: { err_msg: { type: 'string' }, code: { type: 'string' } },
  required: ['err_msg', 'code'],
} as const;

const digestProperty = {
  type: 'string',
  pattern: '^[0-9a-fA-F]{64}$',
  description: 'SHA-256 of the message in 64 hex digits (answers use lowercase).',
} as const;

const digestReply = {
  type: 'object',
  properties: { digest: { type: 'string' } },
  required: ['digest'],
} as const;

const messageReply = {
  type: 'object',
  properties: { message: { type: 'string' } },
  required: ['message'],
} as const;

function errors(descriptions: Record<number, string>) {
  return Object.fromEntries(
    Object.entries(descriptions).map(([status, description]) => [status, { ...errorReply, description }]),
  );
}

/** POST /messages */
export const storeMessageSchema = {
  summary: 'Store a message',
  description:
    'Stores a message and answers its SHA-256 digest. The body is {"message": "<string>"} as ' +
    'application/json, or the message itself as text/plain; charset=utf-8 (same digest).',
  body: {
    content: {
      [JSON_MEDIA_TYPE]: { schema: { type: 'object', properties: { message: { type: 'string' } } } },
      [TEXT_UTF8_TYPE]: { schema: { type: 'string' } },
    },
  },
  response: {
    201: { ...digestReply, description: 'Stored (or already stored); Location names it.' },
    ...errors({
      400: 'Invalid JSON, UTF-8 or message',
      401: 'A write token is required',
      410: 'The message was removed (MESSAGE_REMOVED) and cannot be stored again',
      413: 'The message is over --max-message-size',
      415: 'Unsupported Content-Type or charset',
      503: 'The store could not take the write (STORE_UNAVAILABLE); retry',
      507: 'The store is out of space (INSUFFICIENT_STORAGE); retry once space is freed',
    }),
  },
};

/** GET|HEAD /messages/:digest */
export const readMessageSchema = {
  summary: 'Read a message',
  description:
    'Answers the message as {"message": ...}, or the raw text with Accept: text/plain. ' +
    'Immutable: cacheable for a year; If-None-Match with the ETag answers 304. HEAD answers the headers only.',
  params: { type: 'object', properties: { digest: digestProperty }, required: ['digest'] },
  response: {
    200: {
      description: 'The message',
      content: {
        [JSON_MEDIA_TYPE]: { schema: messageReply },
        [TEXT_UTF8_TYPE]: { schema: { type: 'string' } },
      },
    },
    304: { description: 'Not modified: the client already holds this message', type: 'null' },
    ...errors({
      404: 'No message with this digest (or a malformed digest)',
      410: 'The message was removed (MESSAGE_REMOVED); it is not served by any node',
      500: 'Corrupt entry',
    }),
  },
};

/** DELETE /messages/:digest */
export const removeMessageSchema = {
  summary: 'Remove a message (takedown)',
  description:
    "Deletes the message and lists its digest on the store's denylist, so that every node answers " +
    'it 410 MESSAGE_REMOVED and refuses it when posted again. Requires Authorization: Bearer ' +
    'with an admin token (--admin-token); without any configured, removal over HTTP is off. ' +
    'Idempotent. Clients and proxies may still hold copies of earlier 200 answers (immutable).',
  params: { type: 'object', properties: { digest: digestProperty }, required: ['digest'] },
  response: {
    200: {
      description:
        'Removed: outcome is removed (the message was deleted), not_stored (the digest is listed without a message) or already_removed',
      type: 'object',
      properties: {
        digest: { type: 'string' },
        outcome: { type: 'string', enum: ['removed', 'not_stored', 'already_removed'] },
      },
      required: ['digest', 'outcome'],
    },
    ...errors({
      400: 'The digest is not 64 hex digits (INVALID_DIGEST)',
      401: 'An admin token is required (UNAUTHORIZED)',
      403: 'A write token instead of an admin token (FORBIDDEN), or no admin token configured (REMOVAL_DISABLED)',
      503: 'The store could not take the removal (STORE_UNAVAILABLE); retry',
    }),
  },
};

/** POST /messages/batch */
export const storeBatchSchema = {
  summary: 'Store many messages at once, all durable before the answer',
  description:
    'Every item is checked as POST /messages would check it; one bad item rejects the whole ' +
    'batch, naming its index. At most --batch-max items; the body limit applies.',
  body: {
    type: 'object',
    properties: { messages: { type: 'array', items: { type: 'string' } } },
    required: ['messages'],
  },
  response: {
    201: {
      description: 'The digests, in the order of the messages',
      type: 'object',
      properties: { digests: { type: 'array', items: { type: 'string' } } },
      required: ['digests'],
    },
    ...errors({
      400: 'A bad body or item (err_msg names its index)',
      401: 'A write token is required',
      410: 'An item was removed (MESSAGE_REMOVED, err_msg names its index and digest) and cannot be stored again; the others may be stored',
      413: 'Too many items, an item over the limit, or a body over the limit',
      415: 'Not application/json',
      503: 'The store could not take the write (STORE_UNAVAILABLE); retry',
      507: 'The store is out of space (INSUFFICIENT_STORAGE); retry once space is freed',
    }),
  },
};

/** POST /messages/lookup */
export const lookupSchema = {
  summary: 'Read many messages',
  description:
    'Answers every requested digest (lowercase) with its message, or null when none is stored. ' +
    'At most --batch-max digests.',
  body: {
    type: 'object',
    properties: { digests: { type: 'array', items: digestProperty } },
    required: ['digests'],
  },
  response: {
    200: {
      description: 'Each digest with its message or null',
      type: 'object',
      properties: {
        messages: { type: 'object', additionalProperties: { type: ['string', 'null'] } },
      },
      required: ['messages'],
    },
    ...errors({
      400: 'A bad body or digest (err_msg names its index)',
      410: 'A named digest was removed (MESSAGE_REMOVED, err_msg names it); ask again without it',
      413: 'Too many digests',
      415: 'Not application/json',
      500: 'Corrupt entry',
    }),
  },
};
