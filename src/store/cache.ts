import { LRUCache } from 'lru-cache';
import type { Digest } from '../digest.js';
import { MUST_WAIT, type MessageStore, type MustWait } from './types.js';

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
 * cached message is always right and a hit touches no network. Absence is never cached: a message
 * posted through another node is visible at once. A message larger than the whole cache is simply
 * not kept.
 */
class CachedStore implements MessageStore {
  readonly #store: MessageStore;
  readonly #cache: LRUCache<string, string>;
  readonly #hits: CacheCounters['hits'];
  readonly #misses: CacheCounters['misses'];

  constructor(store: MessageStore, options: CachedStoreOptions) {
    this.#store = store;
    this.#hits = options.counters?.hits ?? UNCOUNTED;
    this.#misses = options.counters?.misses ?? UNCOUNTED;
    this.#cache = new LRUCache<string, string>({
      maxSize: Math.max(1, options.maxBytes),
      sizeCalculation: (message) => Buffer.byteLength(message, 'utf8') + ENTRY_OVERHEAD_BYTES,
    });
  }

  get kind(): string {
    return this.#store.kind;
  }

  /** Bytes currently held (for tests and metrics). */
  get cachedBytes(): number {
    return this.#cache.calculatedSize;
  }

  ready(): Promise<void> {
    return this.#store.ready();
  }

  async put(digest: Digest, message: string): Promise<void> {
    await this.#store.put(digest, message);
    this.#cache.set(cacheKey(digest), message);
  }

  async putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    await this.#store.putMany(entries);
    for (const [digest, message] of entries) this.#cache.set(cacheKey(digest), message);
  }

  async get(digest: Digest): Promise<string | undefined> {
    const key = cacheKey(digest);
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#hits.inc();
      return cached;
    }
    this.#misses.inc();
    const message = await this.#store.get(digest);
    if (message !== undefined) this.#cache.set(key, message);
    return message;
  }

  /** A hit, at once; anything else is get()'s to answer (and count). */
  getSync(digest: Digest): string | MustWait {
    const cached = this.#cache.get(cacheKey(digest));
    if (cached === undefined) return MUST_WAIT;
    this.#hits.inc();
    return cached;
  }

  async has(digest: Digest): Promise<boolean> {
    return this.#cache.has(cacheKey(digest)) || (await this.#store.has(digest));
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
    await this.#store.close();
  }
}

/** Puts a bounded LRU of messages in front of a (remote) store. */
export function cachedStore(
  store: MessageStore,
  options: CachedStoreOptions,
): MessageStore & { readonly cachedBytes: number } {
  return new CachedStore(store, options);
}

/** The 32 digest bytes as a 32-character string: the cheapest exact Map key. */
function cacheKey(digest: Digest): string {
  return digest.toString('latin1');
}
