import type { Digest } from '../digest.js';

/** What getSync answers when only get() can tell, after waiting for the backend. */
export const MUST_WAIT: unique symbol = Symbol('digestd.mustWait');
export type MustWait = typeof MUST_WAIT;

/**
 * What get() and getSync() answer for a digest on the store's denylist: its message was removed
 * (a takedown) and is neither served nor stored again. Told apart from absence (undefined) only on
 * a miss, so a hit costs nothing more.
 */
export const REMOVED: unique symbol = Symbol('digestd.removed');
export type Removed = typeof REMOVED;

/** What remove() found: the message's bytes deleted, no message under the digest, or listed before. */
export type RemovalOutcome = 'removed' | 'not_stored' | 'already_removed';

/**
 * Told of removals made on any node, by a store whose other nodes may hold a removed message in a
 * cache (PostgreSQL LISTEN/NOTIFY, Redis pub/sub). `live` and `lost` say whether notifications are
 * known to arrive: the store checks its channel end to end with heartbeats of its own, so a
 * channel that breaks without a word is `lost` within the heartbeat timeout.
 */
export interface RemovalWatcher {
  /** A digest was removed (on this node or another); called once its removal is committed. */
  removed(digest: Digest): void;
  /** Notifications flow: called once the channel is subscribed and a heartbeat came back. */
  live(): void;
  /** Notifications may have been missed from now on (connection lost, heartbeat late). */
  lost(): void;
}

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
  /**
   * Stores a message under its digest. Idempotent; resolves only once the write is durable.
   * Rejects with MessageRemoved (410) when the digest is on the denylist, checked inside the write
   * itself, so that a put racing a removal never brings the message back.
   */
  put(digest: Digest, message: string): Promise<void>;
  /**
   * Stores several messages in as few durable commits as the backend allows. Rejects with
   * MessageRemoved when any digest is on the denylist (the others may be stored).
   */
  putMany(entries: readonly (readonly [Digest, string])[]): Promise<void>;
  /** The message stored under this digest, REMOVED when it is on the denylist, or undefined. */
  get(digest: Digest): Promise<string | undefined | Removed>;
  /**
   * What get() answers, without a promise, when the store has it at hand (LMDB reads its memory
   * map, the cache has a hit); MUST_WAIT when only get() can tell. Throws where get() rejects.
   */
  getSync(digest: Digest): string | undefined | Removed | MustWait;
  /** Whether a message is stored under this digest (false for a removed one). */
  has(digest: Digest): Promise<boolean>;
  /**
   * Takes a message down: deletes its bytes and lists its digest on the store's durable denylist
   * (the digest only, never the message), atomically, and tells the other nodes (watchRemovals).
   * Resolves once durable, as a put does. Idempotent.
   */
  remove(digest: Digest): Promise<RemovalOutcome>;
  /** Every digest on the denylist, in the backend's order; used by backup and migrate. */
  removedDigests(): AsyncIterable<Digest>;
  /**
   * Tells `watcher` of removals made through any node, for caches in front of a shared store;
   * absent where no other node can hold a copy (LMDB is read in place by every worker). The
   * returned close() stops it.
   */
  watchRemovals?(watcher: RemovalWatcher): { close(): Promise<void> };
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
