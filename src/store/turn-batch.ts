import type { Digest } from '../digest.js';

/**
 * Gathers what is pushed during one turn of the event loop and hands it to `send` in one call on
 * the next (setImmediate): the writes of concurrent requests then share one statement or pipeline,
 * one round trip and one commit. PostgreSQL and Redis batch their puts with it.
 */
export class TurnBatch<T> {
  #pending: T[] = [];
  #scheduled = false;
  readonly #send: (items: T[]) => void;

  constructor(send: (items: T[]) => void) {
    this.#send = send;
  }

  push(item: T): void {
    this.#pending.push(item);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Sends what has been gathered now (a closing store does, rather than wait for the next turn). */
  flush(): void {
    this.#scheduled = false;
    const items = this.#pending;
    if (items.length === 0) return;
    this.#pending = [];
    this.#send(items);
  }
}

/**
 * putMany for a store whose puts already share a commit when issued in one turn (TurnBatch): each
 * entry is put, and the promise resolves once all are durable.
 */
export async function putEach(
  store: { put(digest: Digest, message: string): Promise<void> },
  entries: readonly (readonly [Digest, string])[],
): Promise<void> {
  await Promise.all(entries.map(([digest, message]) => store.put(digest, message)));
}
