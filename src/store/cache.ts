import { LRUCache } from 'lru-cache';
import type { Digest } from '../digest.js';
import {
  MUST_WAIT,
  type MessageStore,
  type MustWait,
  type RemovalOutcome,
  type RemovalWatcher,
  type Removed,
} from './types.js';

/** Counts of reads the cache answered and passed on; the composition root passes digestd's metrics. */
export interface CacheCounters {
  hits: { inc(): void };
  misses: { inc(): void };
}

/** Options of the in-process message cache. */
export interface CachedStoreOptions {
  /** Most bytes of messages (UTF-8) kept, plus a fixed overhead per entry. */
  maxBytes: number;
  /** Where hits and misses are counted; not counted when absent. */
  counters?: CacheCounters | undefined;
}

const UNCOUNTED = { inc() {} };

/** Rough per-entry cost beyond the message: the key, the LRU's node and bookkeeping. */
const ENTRY_OVERHEAD_BYTES = 96;

/**
 * A bounded LRU of messages in front of a remote store. Messages never change once stored, so a
 * cached message is right until it is removed. Absence is never cached: a message posted through
 * another node is visible at once. A message larger than the whole cache is simply not kept.
 *
 * Removals made through any node reach the cache through the store's removal channel
 * (watchRemovals: PostgreSQL LISTEN/NOTIFY, Redis pub/sub), which the store checks end to end with
 * heartbeats. The cache answers only while that channel is live: until it is first live, and from
 * the moment it is lost until it is live again, every read goes to the store and nothing is kept,
 * and the cache is emptied on both changes. A read that began before a removal (or a loss) was
 * heard does not fill the cache with what it read. A store without a channel (one node alone) is
 * taken as live.
 */
class CachedStore implements MessageStore {
  readonly #store: MessageStore;
  readonly #cache: LRUCache<string, string>;
  readonly #hits: CacheCounters['hits'];
  readonly #misses: CacheCounters['misses'];
  #live: boolean;
  /** Counts removals and changes of the channel: a read fills the cache only if none came meanwhile. */
  #epoch = 0;
  #watch: { close(): Promise<void> } | undefined;

  constructor(store: MessageStore, options: CachedStoreOptions) {
    this.#store = store;
    this.#hits = options.counters?.hits ?? UNCOUNTED;
    this.#misses = options.counters?.misses ?? UNCOUNTED;
    this.#cache = new LRUCache<string, string>({
      maxSize: Math.max(1, options.maxBytes),
      sizeCalculation: (message) => Buffer.byteLength(message, 'utf8') + ENTRY_OVERHEAD_BYTES,
    });
    this.#live = store.watchRemovals === undefined;
    const watcher: RemovalWatcher = {
      removed: (digest) => {
        this.#epoch += 1;
        this.#cache.delete(cacheKey(digest));
      },
      live: () => this.#setLive(true),
      lost: () => this.#setLive(false),
    };
    this.#watch = store.watchRemovals?.(watcher);
  }

  #setLive(live: boolean): void {
    this.#epoch += 1;
    this.#cache.clear();
    this.#live = live;
  }

  get kind(): string {
    return this.#store.kind;
  }

  /** Bytes currently held (for tests and metrics). */
  get cachedBytes(): number {
    return this.#cache.calculatedSize;
  }

  /** Whether the removal channel is live, so that the cache answers (for tests). */
  get live(): boolean {
    return this.#live;
  }

  ready(): Promise<void> {
    return this.#store.ready();
  }

  async put(digest: Digest, message: string): Promise<void> {
    const epoch = this.#epoch;
    await this.#store.put(digest, message);
    this.#keep(epoch, digest, message);
  }

  async putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    const epoch = this.#epoch;
    await this.#store.putMany(entries);
    for (const [digest, message] of entries) this.#keep(epoch, digest, message);
  }

  /** Keeps a message read or written, unless a removal or a change of the channel came since `epoch`. */
  #keep(epoch: number, digest: Digest, message: string): void {
    if (this.#live && epoch === this.#epoch) this.#cache.set(cacheKey(digest), message);
  }

  async get(digest: Digest): Promise<string | undefined | Removed> {
    const key = cacheKey(digest);
    const cached = this.#live ? this.#cache.get(key) : undefined;
    if (cached !== undefined) {
      this.#hits.inc();
      return cached;
    }
    this.#misses.inc();
    const epoch = this.#epoch;
    const message = await this.#store.get(digest);
    if (typeof message === 'string') this.#keep(epoch, digest, message);
    return message;
  }

  /** A hit, at once; anything else is get()'s to answer (and count). */
  getSync(digest: Digest): string | MustWait {
    const cached = this.#live ? this.#cache.get(cacheKey(digest)) : undefined;
    if (cached === undefined) return MUST_WAIT;
    this.#hits.inc();
    return cached;
  }

  async has(digest: Digest): Promise<boolean> {
    return (this.#live && this.#cache.has(cacheKey(digest))) || (await this.#store.has(digest));
  }

  async remove(digest: Digest): Promise<RemovalOutcome> {
    this.#epoch += 1;
    this.#cache.delete(cacheKey(digest));
    try {
      return await this.#store.remove(digest);
    } finally {
      // Also after: a read that raced the removal cannot have filled the cache (epoch), but say so.
      this.#epoch += 1;
      this.#cache.delete(cacheKey(digest));
    }
  }

  removedDigests(): AsyncIterable<Digest> {
    return this.#store.removedDigests();
  }

  ping(): Promise<void> {
    return this.#store.ping();
  }

  entries(): AsyncIterable<readonly [Digest, string]> {
    return this.#store.entries();
  }

  count(): Promise<number | undefined> {
    return this.#store.count();
  }

  async close(): Promise<void> {
    this.#cache.clear();
    await this.#watch?.close();
    this.#watch = undefined;
    await this.#store.close();
  }
}

/** Puts a bounded LRU of messages in front of a (remote) store. */
export function cachedStore(
  store: MessageStore,
  options: CachedStoreOptions,
): MessageStore & { readonly cachedBytes: number; readonly live: boolean } {
  return new CachedStore(store, options);
}

/** The 32 digest bytes as a 32-character string: the cheapest exact Map key. */
function cacheKey(digest: Digest): string {
  return digest.toString('latin1');
}
