import { hash } from 'node:crypto';

/** A SHA-256 digest: always exactly 32 bytes. */
export type Digest = Buffer;

/** Length of a digest in hexadecimal characters. */
export const DIGEST_HEX_LENGTH = 64;

/**
 * SHA-256 of the message's UTF-8 bytes. The one-shot crypto.hash skips the Hash object, which
 * costs most for short messages (every read re-hashes its message, see src/store/verified.ts).
 * Asking it for hex and decoding that is faster than asking for a Buffer on Node 20 (the 'buffer'
 * output takes a slower path).
 */
export function digestOf(message: string | Buffer): Digest {
  return Buffer.from(digestHexOf(message), 'hex');
}

/** SHA-256 of the message's UTF-8 bytes as 64 lowercase hex digits (formatDigest of digestOf). */
export function digestHexOf(message: string | Buffer): string {
  return hash('sha256', message, 'hex');
}

/**
 * Parses a digest written in hexadecimal, in either case.
 * Returns undefined for anything that is not exactly 64 hex digits.
 */
export function parseDigest(text: string): Digest | undefined {
  if (text.length !== DIGEST_HEX_LENGTH) return undefined;
  // Buffer.from stops decoding at the first pair that is not hex, so a short result means a bad
  // character; this avoids a regular expression on every GET.
  const digest = Buffer.from(text, 'hex');
  return digest.length === DIGEST_HEX_LENGTH / 2 ? digest : undefined;
}

/** Formats a digest as 64 lowercase hex digits. */
export function formatDigest(digest: Digest): string {
  return digest.toString('hex');
}
