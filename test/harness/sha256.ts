import { createHash } from 'node:crypto';

/**
 * The lowercase hex SHA-256 of a message's UTF-8 bytes (or of raw bytes). Computed here with
 * node:crypto rather than through src/digest.ts, so that tests check digestd's digests against an
 * independent reference.
 */
export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
