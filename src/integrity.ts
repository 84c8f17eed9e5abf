import type { FastifyBaseLogger } from 'fastify';
import { digestOf, formatDigest, type Digest } from './digest.js';
import { Corrupt } from './errors.js';
import { metrics } from './metrics.js';
import type { MessageStore } from './store/types.js';

/**
 * Checks that a message read from a store still hashes to the digest it was stored under.
 * A mismatch (disk corruption, a tampered row, a backend bug) is logged, counted in
 * `digestd_corrupt_messages_total`, and thrown as Corrupt (500), so wrong data is never served.
 * The check costs one SHA-256 of the message, a small share of a read (docs/benchmarks.md).
 */
export function verifyMessage(
  digest: Digest,
  message: string,
  context: { store: string; log: FastifyBaseLogger },
): string {
  const actual = digestOf(message);
  if (actual.equals(digest)) return message;
  metrics.corruptMessages.inc();
  context.log.error(
    {
      digest: formatDigest(digest),
      actualDigest: formatDigest(actual),
      store: context.store,
      bytes: Buffer.byteLength(message, 'utf8'),
    },
    'corruption: a stored message does not hash to its digest; refusing to serve it',
  );
  throw new Corrupt();
}

/** Reads a message and verifies it (see verifyMessage); undefined when none is stored. */
export async function getVerified(
  store: MessageStore,
  digest: Digest,
  log: FastifyBaseLogger,
): Promise<string | undefined> {
  const message = await store.get(digest);
  return message === undefined ? undefined : verifyMessage(digest, message, { store: store.kind, log });
}

/**
 * getVerified for a store that reads synchronously (`store.getSync`): the same check, without a
 * promise. Throws where getVerified rejects.
 */
export function getVerifiedSync(
  store: MessageStore & { getSync(digest: Digest): string | undefined },
  digest: Digest,
  log: FastifyBaseLogger,
): string | undefined {
  const message = store.getSync(digest);
  return message === undefined ? undefined : verifyMessage(digest, message, { store: store.kind, log });
}
