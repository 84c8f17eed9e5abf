import { setImmediate as nextTurn } from 'node:timers/promises';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { digestHexOf, digestOf, formatDigest, parseDigest, type Digest } from '../../digest.js';
import { AnswerTooLarge, InvalidDigest, MessageNotFound, MessageRemoved } from '../../errors.js';
import { metrics } from '../../metrics.js';
import { REMOVED, type MessageStore, type Removed } from '../../store/types.js';
import { IMMUTABLE_CACHE_CONTROL, sendError } from '../answer.js';
import { JSON_MEDIA_TYPE, TEXT_MEDIA_TYPE, TEXT_UTF8_TYPE } from '../body.js';
import { allowOnly } from './method-not-allowed.js';
import { digestsFromBody, messageFromBody, messagesFromBody } from './messages.body.js';
import {
  lookupSchema,
  readMessageSchema,
  removeMessageSchema,
  storeBatchSchema,
  storeMessageSchema,
} from './messages.schemas.js';

/** Options of the message routes. */
export interface MessageRoutesOptions {
  /** Largest message accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** Most items in one batch or lookup. */
  batchMax: number;
  /** Most UTF-8 bytes of messages in one lookup's answer. */
  maxAnswerBytes: number;
}

/**
 * Digests a lookup reads at once before it checks the bound and yields the event loop: few enough
 * that one slice of large messages holds the loop briefly, enough that a network store gets them
 * in one round trip.
 */
const LOOKUP_SLICE = 8;

/**
 * The answer to every miss: an error is answered by what it carries (message, code, status,
 * headers), so one instance serves them all, without building a stack trace per miss.
 */
const MESSAGE_NOT_FOUND = new MessageNotFound();
const MESSAGE_REMOVED = new MessageRemoved();

/**
 * POST /messages, GET|HEAD|DELETE /messages/:digest, POST /messages/batch, POST /messages/lookup.
 */
export const messageRoutes: FastifyPluginCallback<MessageRoutesOptions> = (app, options, done) => {
  const { store } = app;

  app.post('/messages', { config: { write: true }, schema: storeMessageSchema }, async (request, reply) => {
    const message = messageFromBody(request.body, options.maxMessageBytes);
    // One SHA-256, its hex used for the answer and decoded once for the key.
    const hex = digestHexOf(message);
    await store.put(Buffer.from(hex, 'hex'), message);
    return reply.code(201).header('location', `/messages/${hex}`).send({ digest: hex });
  });

  // Every read but the plain GETs the fast path answers (src/http/fast-read.ts): HEAD, text, a
  // conditional GET, and every GET where a rate limit or trusted proxy needs Fastify.
  app.get<{ Params: { digest: string } }>(
    '/messages/:digest',
    { schema: readMessageSchema },
    async (request, reply) => {
      const digest = parseDigest(request.params.digest);
      // A miss is an answer, not a failure: sent as the error handler would send it, without a throw.
      if (digest === undefined) return sendError(reply, MESSAGE_NOT_FOUND);
      const asText = wantsText(request);
      // The two representations differ, so their strong validators must too (RFC 9110 8.8.3).
      const etag = `"${formatDigest(digest)}${asText ? '.txt' : ''}"`;
      if (ifNoneMatchMatches(request.headers['if-none-match'], etag) && (await store.has(digest))) {
        return cacheable(reply, etag).code(304).send();
      }
      return answerRead(reply, await store.get(digest), etag, asText);
    },
  );

  // A takedown: only with an admin token (plugins/bearer-tokens.ts), logged with the token's id.
  app.delete<{ Params: { digest: string } }>(
    '/messages/:digest',
    { config: { admin: true }, schema: removeMessageSchema },
    async (request, reply) => {
      const digest = parseDigest(request.params.digest);
      if (digest === undefined) throw new InvalidDigest('The digest must be 64 hex digits.');
      const outcome = await store.remove(digest);
      metrics.messagesRemoved.inc({ outcome });
      const hex = formatDigest(digest);
      request.log.info({ digest: hex, outcome, tokenId: request.tokenId }, 'message removed');
      return reply.header('cache-control', 'no-store').send({ digest: hex, outcome });
    },
  );

  app.post(
    '/messages/batch',
    { config: { write: true }, schema: storeBatchSchema },
    async (request, reply) => {
      const entries = messagesFromBody(request.body, options).map(
        (message) => [digestOf(message), message] as const,
      );
      try {
        await store.putMany(entries);
      } catch (error) {
        if (!(error instanceof MessageRemoved)) throw error;
        throw await removedFromBatch(store, entries);
      }
      return reply.code(201).send({ digests: entries.map(([digest]) => formatDigest(digest)) });
    },
  );

  app.post('/messages/lookup', { schema: lookupSchema }, async (request, reply) => {
    // A digest named twice is read once (the answer has one key per digest anyway); a Map keeps
    // the order in which each was first named.
    const unique = new Map<string, Digest>();
    for (const digest of digestsFromBody(request.body, options.batchMax))
      unique.set(formatDigest(digest), digest);
    const named = [...unique];
    // No prototype: no key can reach Object.prototype (keys are hex here anyway).
    const messages = Object.create(null) as Record<string, string | null>;
    let answerBytes = 0;
    const removed: string[] = [];
    for (let start = 0; start < named.length; start += LOOKUP_SLICE) {
      // Other requests on this worker are served between slices (LMDB reads synchronously).
      if (start > 0) await nextTurn();
      const slice = named.slice(start, start + LOOKUP_SLICE);
      const found = await Promise.all(slice.map(([, digest]) => store.get(digest)));
      slice.forEach(([hex], index) => {
        const message = found[index];
        if (message === REMOVED) removed.push(hex);
        else if (message !== undefined) answerBytes += Buffer.byteLength(message);
        messages[hex] = typeof message === 'string' ? message : null;
      });
      if (removed.length > 0) throw removedFromLookup(removed);
      // Refused before anything is serialized, once the messages read pass the bound.
      if (answerBytes > options.maxAnswerBytes) throw new AnswerTooLarge(options.maxAnswerBytes);
    }
    return reply.send({ messages });
  });

  allowOnly(app, '/messages', ['POST']);
  allowOnly(app, '/messages/batch', ['POST']);
  allowOnly(app, '/messages/lookup', ['POST']);
  allowOnly(app, '/messages/:digest', ['GET', 'HEAD', 'DELETE']);
  done();
};

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

/**
 * A lookup that names removed digests answers 410 naming them: a null would say "never stored",
 * which a client could take as leave to post the message again.
 */
function removedFromLookup(removed: readonly string[]): MessageRemoved {
  const named =
    removed.slice(0, 3).join(', ') + (removed.length > 3 ? ` and ${removed.length - 3} more` : '');
  return new MessageRemoved(
    `The message${removed.length === 1 ? '' : 's'} ${named} ${removed.length === 1 ? 'was' : 'were'} removed; ask again without ${removed.length === 1 ? 'it' : 'them'}.`,
  );
}

/**
 * A batch refused for removed items answers 410 naming them (index and digest), so that the client
 * can post the others again without them; read back only on this rare path.
 */
async function removedFromBatch(
  store: MessageStore,
  entries: readonly (readonly [Digest, string])[],
): Promise<MessageRemoved> {
  const found = await Promise.all(entries.map(([digest]) => store.get(digest)));
  const removed = entries.flatMap(([digest], index) =>
    found[index] === REMOVED ? [`messages[${index}] (${formatDigest(digest)})`] : [],
  );
  if (removed.length === 0) return MESSAGE_REMOVED;
  const named =
    removed.slice(0, 3).join(', ') + (removed.length > 3 ? ` and ${removed.length - 3} more` : '');
  const one = removed.length === 1;
  return new MessageRemoved(
    `${named} ${one ? 'was' : 'were'} removed and cannot be stored again; post the batch again without ${one ? 'it' : 'them'} (storing is idempotent).`,
  );
}

/** The answer to a read: the message as JSON or text, 410 when removed, or 404 when none is stored. */
function answerRead(
  reply: FastifyReply,
  message: string | undefined | Removed,
  etag: string,
  asText: boolean,
): FastifyReply {
  if (message === undefined) return sendError(reply, MESSAGE_NOT_FOUND);
  if (message === REMOVED) return sendError(reply, MESSAGE_REMOVED);
  cacheable(reply, etag);
  if (asText) return reply.type(TEXT_UTF8_TYPE).send(message);
  return reply.send({ message });
}

function cacheable(reply: FastifyReply, etag: string): FastifyReply {
  return reply.header('etag', etag).header('cache-control', IMMUTABLE_CACHE_CONTROL).header('vary', 'Accept');
}
