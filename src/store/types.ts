import type { Digest } from '../digest.js';

/** What getSync answers when only get() can tell, after waiting for the backend. */
export const MUST_WAIT: unique symbol = Symbol('digestd.mustWait');
export type MustWait = typeof MUST_WAIT;

/**
 * The contract every message store implements: LMDB, PostgreSQL, Redis, Redis Cluster.
 * Keys are the 32-byte SHA-256 digest of the message; hashing happens in the core, never in a store.
 * A failure to reach the backend rejects with StoreUnavailable (with the backend error as `cause`).
 */
export interface MessageStore {
  /** A short name for logs and /readyz, e.g. `lmdb`. */
  readonly kind: string;
  /** Resolves once the store can serve requests (connected, schema migrated). */
  ready(): Promise<void>;
  /** Stores a message under its digest. Idempotent; resolves only once the write is durable. */
  put(digest: Digest, message: string): Promise<void>;
  /** Stores several messages in as few durable commits as the backend allows. */
  putMany(entries: readonly (readonly [Digest, string])[]): Promise<void>;
  /** The message stored under this digest, or undefined. */
  get(digest: Digest): Promise<string | undefined>;
  /**
   * What get() answers, without a promise, when the store has it at hand (LMDB reads its memory
   * map, the cache has a hit); MUST_WAIT when only get() can tell. Throws where get() rejects.
   */
  getSync(digest: Digest): string | undefined | MustWait;
  /** Whether a message is stored under this digest. */
  has(digest: Digest): Promise<boolean>;
  /** Resolves when the backend answers a trivial request; rejects with StoreUnavailable otherwise. */
  ping(): Promise<void>;
  /**
   * Every stored entry, in the backend's order; used by backup, migrate and verify. LMDB and
   * PostgreSQL walk one snapshot (a read transaction): exactly what was committed when the walk
   * began. Redis SCANs each master: every entry stored before the walk began and still there at its
   * end is listed, one written during it may or may not be, and one may be listed twice.
   */
  entries(): AsyncIterable<readonly [Digest, string]>;
  /** Number of stored messages, when the backend can tell cheaply (used for progress). */
  count(): Promise<number | undefined>;
  /** Flushes and releases resources. Further calls fail. */
  close(): Promise<void>;
}

/**
 * Where a store reports what an operator should know and no request answers for, such as a change
 * of a Redis Cluster's topology. A pino logger fits; stores log nothing without one.
 */
export interface StoreLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}
