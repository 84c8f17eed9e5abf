import type { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { digestOf, formatDigest, parseDigest, type Digest } from '../../digest.js';
import {
  BadRequest,
  BatchTooLarge,
  InvalidDigest,
  InvalidMessage,
  MessageNotFound,
  PayloadTooLarge,
  UnsupportedMediaType,
} from '../../errors.js';
import { getVerified } from '../../integrity.js';
import { metrics } from '../../metrics.js';
import { JSON_MEDIA_TYPE, RawMessage, TEXT_MEDIA_TYPE, TEXT_UTF8_TYPE } from '../body.js';
import { allowOnly } from './method-not-allowed.js';

/** Options of the message routes. */
export interface MessageRoutesOptions {
  /** Largest message accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** Most items in one batch or lookup. */
  batchMax: number;
}

/** A stored message never changes, so any cache may keep it for a year without revalidating. */
export const IMMUTABLE_CACHE_CONTROL = 'public, max-age=31536000, immutable';

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

/**
 * Checks one message without coercion: a string that survives UTF-8 encoding unchanged and fits
 * the limit. `label` names it in errors (`"message"`, `messages[3]`).
 */
export function checkMessage(value: unknown, label: string, maxMessageBytes: number): string {
  if (typeof value !== 'string') {
    throw new InvalidMessage(`${label} must be a string, not ${value === null ? 'null' : typeof value}.`);
  }
  if (!value.isWellFormed()) {
    throw new InvalidMessage(`${label} contains a lone surrogate, which cannot be encoded as UTF-8.`);
  }
  // Each UTF-16 unit is at most 3 UTF-8 bytes, so short strings skip the exact count.
  if (value.length * 3 > maxMessageBytes && Buffer.byteLength(value, 'utf8') > maxMessageBytes) {
    throw new PayloadTooLarge(maxMessageBytes, label === '"message"' ? 'The message' : label);
  }
  return value;
}

/**
 * Checks a parsed body without coercion: it must be an object whose own `message` is a string
 * that survives UTF-8 encoding unchanged and fits the limit, or a text/plain body. Returns the message.
 */
export function messageFromBody(body: unknown, maxMessageBytes: number): string {
  if (body instanceof RawMessage) {
    if (body.byteLength > maxMessageBytes) throw new PayloadTooLarge(maxMessageBytes);
    return body.text;
  }
  if (body === undefined) {
    throw new InvalidMessage('The request body is empty; send {"message": "<string>"} as application/json.');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidMessage('The body must be a JSON object such as {"message": "hello"}.');
  }
  if (!Object.hasOwn(body, 'message')) {
    throw new InvalidMessage('The body has no "message" field; send {"message": "<string>"}.');
  }
  return checkMessage((body as { message: unknown }).message, '"message"', maxMessageBytes);
}

/**
 * The array under `field` of a batch body ({"messages": [...]} or {"digests": [...]}), at most
 * `limit` long. Structural problems throw `invalid` errors.
 */
function listFromBody(
  body: unknown,
  field: string,
  limit: number,
  invalid: (message: string) => Error,
): unknown[] {
  const example = `{"${field}": [...]}`;
  if (body instanceof RawMessage) throw new UnsupportedMediaType([JSON_MEDIA_TYPE]);
  if (body === undefined) throw invalid(`The request body is empty; send ${example} as application/json.`);
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !Object.hasOwn(body, field)) {
    throw invalid(`The body must be a JSON object ${example}.`);
  }
  const list = (body as Record<string, unknown>)[field];
  if (!Array.isArray(list)) throw invalid(`"${field}" must be an array.`);
  if (list.length > limit) throw new BatchTooLarge(list.length, limit);
  return list;
}

/** Whether the client prefers the raw text to JSON (q-values honoured; JSON wins ties and no-match). */
function wantsText(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  // Text is chosen only when asked for by type (text/plain or text/*): skip negotiating otherwise.
  if (accept === undefined || !accept.includes('text/')) return false;
  return request.accepts().type([JSON_MEDIA_TYPE, TEXT_MEDIA_TYPE]) === TEXT_MEDIA_TYPE;
}

/**
 * Whether If-None-Match names `etag` (weak comparison, RFC 9110 13.1.2) or is `*`.
 * Only called for a stored message, so `*` matches.
 */
export function ifNoneMatchMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return tag === '*' || (tag.startsWith('W/') ? tag.slice(2) : tag) === etag;
  });
}

/** POST /messages, GET|HEAD /messages/:digest, POST /messages/batch, POST /messages/lookup. */
export const messageRoutes: FastifyPluginCallback<MessageRoutesOptions> = (
  app: FastifyInstance,
  options,
  done,
) => {
  const { store } = app;

  app.post(
    '/messages',
    {
      config: { write: true },
      schema: {
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
            413: 'The message is over --max-message-bytes',
            415: 'Unsupported Content-Type or charset',
            503: 'The store could not take the write (STORE_UNAVAILABLE); retry',
            507: 'The store is out of space (INSUFFICIENT_STORAGE); retry once space is freed',
          }),
        },
      },
    },
    async (request, reply) => {
      const message = messageFromBody(request.body, options.maxMessageBytes);
      const digest = digestOf(message);
      await store.put(digest, message);
      metrics.messagesStored.inc();
      const hex = formatDigest(digest);
      return reply.code(201).header('location', `/messages/${hex}`).send({ digest: hex });
    },
  );

  app.get<{ Params: { digest: string } }>(
    '/messages/:digest',
    {
      schema: {
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
          ...errors({ 404: 'No message with this digest (or a malformed digest)', 500: 'Corrupt entry' }),
        },
      },
    },
    async (request, reply) => {
      const digest = parseDigest(request.params.digest);
      if (digest === undefined) throw new MessageNotFound();
      const asText = wantsText(request);
      // The two representations differ, so their strong validators must too (RFC 9110 8.8.3).
      const etag = `"${formatDigest(digest)}${asText ? '.txt' : ''}"`;
      const conditional = request.headers['if-none-match'];
      if (ifNoneMatchMatches(conditional, etag) && (await store.has(digest))) {
        return cacheable(reply, etag).code(304).send();
      }
      const message = await getVerified(store, digest, request.log);
      if (message === undefined) throw new MessageNotFound();
      cacheable(reply, etag);
      if (asText) return reply.type(TEXT_UTF8_TYPE).send(message);
      return reply.send({ message });
    },
  );

  app.post(
    '/messages/batch',
    {
      config: { write: true },
      schema: {
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
            413: 'Too many items, an item over the limit, or a body over the limit',
            415: 'Not application/json',
            503: 'The store could not take the write (STORE_UNAVAILABLE); retry',
            507: 'The store is out of space (INSUFFICIENT_STORAGE); retry once space is freed',
          }),
        },
      },
    },
    async (request, reply) => {
      const items = listFromBody(
        request.body,
        'messages',
        options.batchMax,
        (text) => new InvalidMessage(text),
      );
      const entries = items.map((item, index) => {
        const message = checkMessage(item, `messages[${index}]`, options.maxMessageBytes);
        return [digestOf(message), message] as const;
      });
      await store.putMany(entries);
      metrics.messagesStored.inc(entries.length);
      return reply.code(201).send({ digests: entries.map(([digest]) => formatDigest(digest)) });
    },
  );

  app.post(
    '/messages/lookup',
    {
      schema: {
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
            413: 'Too many digests',
            415: 'Not application/json',
            500: 'Corrupt entry',
          }),
        },
      },
    },
    async (request, reply) => {
      const items = listFromBody(request.body, 'digests', options.batchMax, (text) => new BadRequest(text));
      const digests: Digest[] = items.map((item, index) => {
        const digest = typeof item === 'string' ? parseDigest(item) : undefined;
        if (digest === undefined) {
          throw new InvalidDigest(`digests[${index}] is not a digest: expected 64 hex digits.`);
        }
        return digest;
      });
      const found = await Promise.all(digests.map((digest) => getVerified(store, digest, request.log)));
      // No prototype: no key can reach Object.prototype (keys are hex here anyway).
      const messages = Object.create(null) as Record<string, string | null>;
      digests.forEach((digest, index) => (messages[formatDigest(digest)] = found[index] ?? null));
      return reply.send({ messages });
    },
  );

  allowOnly(app, '/messages', ['POST']);
  allowOnly(app, '/messages/batch', ['POST']);
  allowOnly(app, '/messages/lookup', ['POST']);
  allowOnly(app, '/messages/:digest', ['GET', 'HEAD']);
  done();
};

function cacheable(reply: FastifyReply, etag: string): FastifyReply {
  return reply.header('etag', etag).header('cache-control', IMMUTABLE_CACHE_CONTROL).header('vary', 'Accept');
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route writes: it requires a write token when tokens are configured. */
    write?: boolean;
  }
}
