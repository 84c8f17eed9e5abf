import type { FastifyInstance, FastifyPluginCallback } from 'fastify';
import { digestOf, formatDigest, parseDigest } from '../../digest.js';
import { InvalidMessage, MessageNotFound, PayloadTooLarge } from '../../errors.js';
import { allowOnly } from './method-not-allowed.js';

/** Options of the message routes. */
export interface MessageRoutesOptions {
  /** Largest message accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
}

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

/**
 * Checks a parsed body without coercion: it must be an object whose own `message` is a string
 * that survives UTF-8 encoding unchanged and fits the limit. Returns the message.
 */
export function messageFromBody(body: unknown, maxMessageBytes: number): string {
  if (body === undefined) {
    throw new InvalidMessage('The request body is empty; send {"message": "<string>"} as application/json.');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidMessage('The body must be a JSON object such as {"message": "hello"}.');
  }
  if (!Object.hasOwn(body, 'message')) {
    throw new InvalidMessage('The body has no "message" field; send {"message": "<string>"}.');
  }
  const message = (body as { message: unknown }).message;
  if (typeof message !== 'string') {
    throw new InvalidMessage(
      `"message" must be a string, not ${message === null ? 'null' : typeof message}.`,
    );
  }
  if (!message.isWellFormed()) {
    throw new InvalidMessage('"message" contains a lone surrogate, which cannot be encoded as UTF-8.');
  }
  // Each UTF-16 unit is at most 3 UTF-8 bytes, so short strings skip the exact count.
  if (message.length * 3 > maxMessageBytes && Buffer.byteLength(message, 'utf8') > maxMessageBytes) {
    throw new PayloadTooLarge(maxMessageBytes);
  }
  return message;
}

/** POST /messages and GET /messages/:digest. */
export const messageRoutes: FastifyPluginCallback<MessageRoutesOptions> = (
  app: FastifyInstance,
  options,
  done,
) => {
  const { store } = app;

  app.post('/messages', { schema: { response: { 201: digestReply } } }, async (request, reply) => {
    const message = messageFromBody(request.body, options.maxMessageBytes);
    const digest = digestOf(message);
    await store.put(digest, message);
    return reply.code(201).send({ digest: formatDigest(digest) });
  });

  app.get<{ Params: { digest: string } }>(
    '/messages/:digest',
    { schema: { response: { 200: messageReply } } },
    async (request, reply) => {
      const digest = parseDigest(request.params.digest);
      if (digest === undefined) throw new MessageNotFound();
      const message = await store.get(digest);
      if (message === undefined) throw new MessageNotFound();
      return reply.send({ message });
    },
  );

  allowOnly(app, '/messages', ['POST']);
  allowOnly(app, '/messages/:digest', ['GET', 'HEAD']);
  done();
};
