import { digestOf, type Digest } from '../digest.js';
import { Corrupt } from '../errors.js';
import {
  MUST_WAIT,
  REMOVED,
  type MessageStore,
  type MustWait,
  type RemovalOutcome,
  type RemovalWatcher,
  type Removed,
} from './types.js';

/** A stored message that does not hash to the digest it is stored under. */
export interface Mismatch {
  /** The store's kind, e.g. `lmdb`. */
  store: string;
  /** The digest it is stored under. */
  digest: Digest;
  /** The SHA-256 of what is stored. */
  actual: Digest;
  /** What is stored. */
  message: string;
}

/** Options of the verifying store. */
export interface VerifiedStoreOptions {
  /** Told of every mismatch found (the server logs and counts it; verify and migrate list it). */
  onMismatch: (mismatch: Mismatch) => void;
}

/**
 * A store whose every message is checked against its digest as it is read: a mismatch (disk
 * corruption, a tampered row, a backend bug) is reported to `onMismatch` and is never handed on.
 * A read throws Corrupt (500) for it; a walk of entries() skips it and goes on. The check costs
 * one SHA-256 of the message per read. The server, migrate and verify read through it alike.
 */
class VerifiedStore implements MessageStore {
  readonly kind: string;
  readonly #store: MessageStore;
  readonly #onMismatch: VerifiedStoreOptions['onMismatch'];

  constructor(store: MessageStore, options: VerifiedStoreOptions) {
    this.kind = store.kind;
    this.#store = store;
    this.#onMismatch = options.onMismatch;
  }

  /** The message when it hashes to `digest`; reports it and returns the actual digest otherwise. */
  #mismatch(digest: Digest, message: string): Digest | undefined {
    const actual = digestOf(message);
    if (actual.equals(digest)) return undefined;
    this.#onMismatch({ store: this.kind, digest, actual, message });
    return actual;
  }

  async get(digest: Digest): Promise<string | undefined | Removed> {
    const message = await this.#store.get(digest);
    if (typeof message === 'string' && this.#mismatch(digest, message) !== undefined) throw new Corrupt();
    return message;
  }

  getSync(digest: Digest): string | undefined | Removed | MustWait {
    const message = this.#store.getSync(digest);
    if (message === undefined || message === MUST_WAIT || message === REMOVED) return message;
    if (this.#mismatch(digest, message) !== undefined) throw new Corrupt();
    return message;
  }

  entries(): AsyncIterable<readonly [Digest, string]> {
    return verifiedEntries(this.#store.entries(), this.kind, this.#onMismatch);
  }

  has(digest: Digest): Promise<boolean> {
    return this.#store.has(digest);
  }

  put(digest: Digest, message: string): Promise<void> {
    return this.#store.put(digest, message);
  }

  putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    return this.#store.putMany(entries);
  }

  remove(digest: Digest): Promise<RemovalOutcome> {
    return this.#store.remove(digest);
  }

  removedDigests(): AsyncIterable<Digest> {
    return this.#store.removedDigests();
  }

  get watchRemovals(): ((watcher: RemovalWatcher) => { close(): Promise<void> }) | undefined {
    return this.#store.watchRemovals?.bind(this.#store);
  }

  ready(): Promise<void> {
    return this.#store.ready();
  }

  ping(): Promise<void> {
    return this.#store.ping();
  }

  count(): Promise<number | undefined> {
    return this.#store.count();
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

/**
 * The entries of a walk that hash to their digest; each other one is reported to `onMismatch` and
 * left out. What the verifying store's entries() yields, and what restore reads from a backup file
 * (`store` names where they come from).
 */
export async function* verifiedEntries(
  entries: AsyncIterable<readonly [Digest, string]>,
  store: string,
  onMismatch: VerifiedStoreOptions['onMismatch'],
): AsyncIterable<readonly [Digest, string]> {
  for await (const entry of entries) {
    const [digest, message] = entry;
    const actual = digestOf(message);
    if (actual.equals(digest)) yield entry;
    else onMismatch({ store, digest, actual, message });
  }
}

/** Wraps a store so that every message read from it is checked against its digest. */
export function verifiedStore(store: MessageStore, options: VerifiedStoreOptions): MessageStore {
  return new VerifiedStore(store, options);
}
