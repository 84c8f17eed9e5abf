import { mkdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import type { Digest } from '../digest.js';
import { StoreUnavailable } from '../errors.js';
import type { MessageStore } from './types.js';

/** Options of the embedded LMDB store. */
export interface LmdbStoreOptions {
  /** Directory holding the LMDB environment (created if missing). */
  path: string;
  /**
   * Maximum size the memory map may grow to, in bytes. LMDB grows the file on demand up to this.
   * @default 1 TiB (address space only; the file holds just what is stored)
   */
  mapSize?: number;
}

/**
 * Embedded, durable store on LMDB. Writes from concurrent requests are batched into one
 * transaction by lmdb-js; each put resolves only after that transaction is flushed to disk
 * (overlappingSync commits first, then fsyncs; we await the flush, not only the commit).
 */
export class LmdbStore implements MessageStore {
  readonly kind = 'lmdb';
  #root: RootDatabase<string, Digest>;
  #db: Database<string, Digest>;

  private constructor(root: RootDatabase<string, Digest>) {
    this.#root = root;
    this.#db = root;
  }

  /** Opens (creating if needed) the LMDB environment in `options.path`. */
  static async open(options: LmdbStoreOptions): Promise<LmdbStore> {
    try {
      await mkdir(options.path, { recursive: true });
      const root = openLmdb<string, Digest>({
        path: options.path,
        // Always a directory, even when its name has a dot (lmdb-js would otherwise take it for a file).
        noSubdir: false,
        encoding: 'string',
        keyEncoding: 'binary',
        compression: false,
        mapSize: options.mapSize ?? 2 ** 40,
        // Commit without waiting for fsync, then await `flushed` before acknowledging.
        overlappingSync: true,
        // Messages are immutable; no need for lmdb-js's own object cache on top of the page cache.
        cache: false,
      });
      return new LmdbStore(root);
    } catch (error) {
      throw new StoreUnavailable(`Cannot open the LMDB store at ${options.path}.`, { cause: error });
    }
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  async put(digest: Digest, message: string): Promise<void> {
    // Always written, even when the digest is already stored: the copy found may belong to another
    // worker's commit that is visible but not yet flushed, and `flushed` only covers this
    // process's own writes; writing also repairs a corrupt copy.
    await this.#write(() => this.#db.put(digest, message));
  }

  async putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    if (entries.length === 0) return;
    await this.#write(() => Promise.all(entries.map(([digest, message]) => this.#db.put(digest, message))));
  }

  async #write(commit: () => Promise<unknown>): Promise<void> {
    try {
      await commit();
      // The commit above is visible but maybe not yet on disk; this resolves once it is.
      await this.#root.flushed;
    } catch (error) {
      throw new StoreUnavailable('The LMDB store failed to write.', { cause: error });
    }
  }

  get(digest: Digest): Promise<string | undefined> {
    try {
      return Promise.resolve(this.#db.get(digest));
    } catch (error) {
      return Promise.reject(new StoreUnavailable('The LMDB store failed to read.', { cause: error }));
    }
  }

  has(digest: Digest): Promise<boolean> {
    try {
      return Promise.resolve(this.#db.doesExist(digest));
    } catch (error) {
      return Promise.reject(new StoreUnavailable('The LMDB store failed to read.', { cause: error }));
    }
  }

  ping(): Promise<void> {
    try {
      this.#root.getStats();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(new StoreUnavailable('The LMDB store does not answer.', { cause: error }));
    }
  }

  entries(): AsyncIterable<readonly [Digest, string]> {
    // A read snapshot in key order, as a stream so long walks yield to the event loop.
    return Readable.from(this.#db.getRange().map(({ key, value }) => [Buffer.from(key), value] as const));
  }

  count(): Promise<number | undefined> {
    return Promise.resolve(this.#db.getCount());
  }

  async close(): Promise<void> {
    await this.#root.flushed;
    await this.#root.close();
  }
}
