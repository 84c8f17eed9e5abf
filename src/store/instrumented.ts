import type { Counter } from 'prom-client';
import type { Digest } from '../digest.js';
import { InsufficientStorage, MessageRemoved, StoreUnavailable } from '../errors.js';
import {
  MUST_WAIT,
  type MessageStore,
  type MustWait,
  type RemovalOutcome,
  type RemovalWatcher,
  type Removed,
} from './types.js';

/** The metrics an instrumented store records into; the composition root passes digestd's own. */
export interface StoreInstruments {
  /**
   * Latency of each operation, labelled by store, operation and outcome (`ok` or `error`): a
   * histogram whose labelled children observe seconds (prom-client's Histogram, or digestd's own
   * in src/histogram.ts).
   */
  operationDuration: {
    labels(labels: Record<'store' | 'operation' | 'outcome', string>): OperationTimer;
  };
  /** Messages acknowledged as durably stored (a message stored twice counts twice). */
  messagesStored: Pick<Counter, 'inc'>;
  /** Writes that failed, labelled by store and reason. */
  writeFailures: Pick<Counter<'store' | 'reason'>, 'inc'>;
}

type OperationTimer = { observe(seconds: number): void };
type Timers = { ok: OperationTimer; error: OperationTimer };

/** Observes how long a store operation took, in `ok` or `error`, and passes its outcome on. */
async function timed<T>(timers: Timers, run: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    const result = await run();
    timers.ok.observe((performance.now() - started) / 1000);
    return result;
  } catch (error) {
    timers.error.observe((performance.now() - started) / 1000);
    throw error;
  }
}

/**
 * A store whose operations' latencies and acknowledged writes are recorded. A plain class rather
 * than a Proxy: no trap on every property read of the hot path, and implementing the contract
 * makes TypeScript name any method added to it later. Methods are looked up on the store at each
 * call, so one replaced later (a test's spy) is still the one timed.
 */
class InstrumentedStore implements MessageStore {
  readonly kind: string;
  readonly #store: MessageStore;
  readonly #messagesStored: StoreInstruments['messagesStored'];
  readonly #writeFailures: StoreInstruments['writeFailures'];
  readonly #timers: Record<'get' | 'has' | 'put' | 'putMany' | 'remove' | 'ping', Timers>;

  constructor(store: MessageStore, instruments: StoreInstruments) {
    this.kind = store.kind;
    this.#store = store;
    this.#messagesStored = instruments.messagesStored;
    this.#writeFailures = instruments.writeFailures;
    // Labelled children built once: a lookup per call would cost as much as the observation.
    const timers = (operation: string): Timers => ({
      ok: instruments.operationDuration.labels({ store: store.kind, operation, outcome: 'ok' }),
      error: instruments.operationDuration.labels({ store: store.kind, operation, outcome: 'error' }),
    });
    this.#timers = {
      get: timers('get'),
      has: timers('has'),
      put: timers('put'),
      putMany: timers('putMany'),
      remove: timers('remove'),
      ping: timers('ping'),
    };
    // Each reason present at 0 from the start, so that increase() sees the first failure.
    for (const reason of WRITE_FAILURE_REASONS) this.#writeFailures.inc({ store: store.kind, reason }, 0);
  }

  get(digest: Digest): Promise<string | undefined | Removed> {
    return timed(this.#timers.get, () => this.#store.get(digest));
  }

  /** Timed as get() is, when it answers; a MUST_WAIT is get()'s to time. */
  getSync(digest: Digest): string | undefined | Removed | MustWait {
    const timers = this.#timers.get;
    const started = performance.now();
    try {
      const message = this.#store.getSync(digest);
      if (message !== MUST_WAIT) timers.ok.observe((performance.now() - started) / 1000);
      return message;
    } catch (error) {
      timers.error.observe((performance.now() - started) / 1000);
      throw error;
    }
  }

  has(digest: Digest): Promise<boolean> {
    return timed(this.#timers.has, () => this.#store.has(digest));
  }

  async put(digest: Digest, message: string): Promise<void> {
    await this.#countFailure(timed(this.#timers.put, () => this.#store.put(digest, message)));
    this.#messagesStored.inc();
  }

  async putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    await this.#countFailure(timed(this.#timers.putMany, () => this.#store.putMany(entries)));
    this.#messagesStored.inc(entries.length);
  }

  remove(digest: Digest): Promise<RemovalOutcome> {
    return timed(this.#timers.remove, () => this.#store.remove(digest));
  }

  removedDigests(): AsyncIterable<Digest> {
    return this.#store.removedDigests();
  }

  get watchRemovals(): ((watcher: RemovalWatcher) => { close(): Promise<void> }) | undefined {
    return this.#store.watchRemovals?.bind(this.#store);
  }

  /**
   * Counts a failed write by its reason, and passes the failure on. A put of a removed message is
   * an answer (410), not a failure of the store.
   */
  async #countFailure(write: Promise<void>): Promise<void> {
    try {
      await write;
    } catch (error) {
      if (!(error instanceof MessageRemoved)) {
        this.#writeFailures.inc({ store: this.kind, reason: writeFailureReason(error) });
      }
      throw error;
    }
  }

  ping(): Promise<void> {
    return timed(this.#timers.ping, () => this.#store.ping());
  }

  ready(): Promise<void> {
    return this.#store.ready();
  }

  entries(): AsyncIterable<readonly [Digest, string]> {
    return this.#store.entries();
  }

  count(): Promise<number | undefined> {
    return this.#store.count();
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

/** Every `reason` label of a failed write (the reasons StoreUnavailable gives, and the disk's). */
const WRITE_FAILURE_REASONS = ['insufficient_storage', 'timeout', 'too_few_replicas', 'unavailable'];

/** The `reason` label of a failed write. */
function writeFailureReason(error: unknown): string {
  if (error instanceof InsufficientStorage) return 'insufficient_storage';
  if (error instanceof StoreUnavailable) return error.reason;
  return 'unavailable';
}

/** Wraps a store so that each operation's latency and each acknowledged write are recorded. */
export function instrumentedStore(store: MessageStore, instruments: StoreInstruments): MessageStore {
  return new InstrumentedStore(store, instruments);
}
