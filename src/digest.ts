import { hash } from 'node:crypto';

/** A SHA-256 digest: always exactly 32 bytes. */
export type Digest = Buffer;

/** Length of a digest in hexadecimal characters. */
export const DIGEST_HEX_LENGTH = 64;

const HEX_DIGEST = /^[0-9a-fA-F]{64}$/;

/**
 * SHA-256 of the message's UTF-8 bytes. The one-shot crypto.hash skips the Hash object, which
 * halves the cost for short messages (every read re-hashes its message, see src/integrity.ts).
 */
export function digestOf(message: string | Buffer): Digest {
  return hash('sha256', message, 'buffer');
}

/**
 * Parses a digest written in hexadecimal, in either case.
 * Returns undefined for anything that is not exactly 64 hex digits.
 */
export function parseDigest(text: string): Digest | undefined {
  if (text.length !== DIGEST_HEX_LENGTH || !HEX_DIGEST.test(text)) return undefined;
  return Buffer.from(text, 'hex');
}

/** Formats a digest as 64 lowercase hex digits. */
export function formatDigest(digest: Digest): string {
  return digest.toString('hex');
}
