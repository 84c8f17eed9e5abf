import { stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { constants } from 'node:os';
import { Readable } from 'node:stream';
import { open as openLmdb, type Database, type RootDatabase, type RootDatabaseOptionsWithPath } from 'lmdb';
import type { Digest } from '../digest.js';
import {
  DigestdError,
  InsufficientStorage,
  MessageRemoved,
  StoreNotFound,
  StoreUnavailable,
} from '../errors.js';
import { createDirectory } from '../directory.js';
import { withDeadline } from './deadline.js';
import { REMOVED, type MessageStore, type RemovalOutcome, type Removed, type StoreLogger } from './types.js';

/** Options of the embedded LMDB store. */
export interface LmdbStoreOptions {
  /** Directory holding the LMDB environment (created if missing, unless `mustExist`). */
  path: string;
  /** Refuse (StoreNotFound) a directory without an LMDB environment instead of creating one. */
  mustExist?: boolean;
  /**
   * Maximum size the memory map may grow to, in bytes. LMDB grows the file on demand up to this.
   * @default 1 TiB (address space only; the file holds just what is stored)
   */
  mapSize?: number;
  /** Time a write may take, commit and flush, before it fails with StoreUnavailable, in ms. */
  timeoutMs: number;
  /**
   * While the filesystem has less free space than this, writes fail with InsufficientStorage
   * before LMDB is asked, so that LMDB does not meet ENOSPC in normal operation. Absent or 0: no
   * check; writes fail only once the disk refuses them.
   */
  diskReserveBytes?: number | undefined;
  /** Receives the moments writes stop and resume for lack of space. */
  logger?: StoreLogger | undefined;
}

/**
 * A write that fails (EIO: LMDB reports a short write so) while the filesystem has less than this
 * free failed for lack of room: a write needs room for new pages before the old ones are freed.
 */
const MIN_FREE_BYTES = 1024 * 1024;

/**
 * How often free space is sampled (statfs, off the event loop): a check costs a system call, so it
 * is never made per request.
 */
const SPACE_CHECK_INTERVAL_MS = 250;

/**
 * Between two samples a worker writes at most this share of the reserve before it samples again
 * after a commit, so that a fast writer cannot use up the reserve between two ticks of the timer.
 */
const RESERVE_SHARE_BETWEEN_CHECKS = 4;

/** Written and removed in one transaction to learn whether writes work again; never a digest (not 32 bytes). */
const PROBE_KEY = Buffer.from('digestd:write-probe');

/** More writes than one event-loop turn issues (each is a request's, or a batch's items). */
const ONE_TRANSACTION_PER_TURN = 100_000;

/**
 * The named database of removed digests (the denylist): digest -> when it was removed (ISO 8601).
 * LMDB keeps each named database as one entry of the main one, which holds the messages; walks
 * skip it (not 32 bytes) and count() leaves it out.
 */
const REMOVED_DB = 'removed';

/** LMDB's own code for a map that is full (the map size, not the disk). */
const MDB_MAP_FULL = -30792;

/** Error numbers that mean "no room", as lmdb-js reports them (a number) or Node does (a name). */
const OUT_OF_SPACE = new Set<number | string>([
  constants.errno.ENOSPC,
  constants.errno.EDQUOT,
  MDB_MAP_FULL,
  'ENOSPC',
  'EDQUOT',
]);

/** A write of lmdb-js: the promise of its commit (visible), with `flushed` (on disk) under separateFlushed. */
type LmdbWrite = Promise<unknown> & { flushed?: PromiseLike<unknown> };

/**
 * Embedded, durable store on LMDB. Writes from concurrent requests are batched into one
 * transaction by lmdb-js; each put resolves only after that transaction is flushed to disk
 * (overlappingSync commits first, then fsyncs; we await the flush, not only the commit).
 *
 * A failed write rejects with InsufficientStorage when the disk, quota or map is full and with
 * StoreUnavailable otherwise; every promise lmdb-js hands out for it is observed, so a failed
 * commit never becomes an unhandled rejection. While the last write failed, ping() (and so
 * /readyz) tries a small write itself, so the store reports ready again as soon as writes work.
 */
export class LmdbStore implements MessageStore {
  readonly kind = 'lmdb';
  readonly #path: string;
  readonly #timeoutMs: number;
  #root: RootDatabase<string, Digest>;
  #db: Database<string, Digest>;
  /** The denylist, in the same environment: one transaction removes a message and lists it. */
  #removed: Database<string, Digest>;
  /** Why the most recent write failed; undefined once one succeeds. */
  #writeFailure: DigestdError | undefined;
  readonly #reserveBytes: number;
  readonly #logger: StoreLogger | undefined;
  /** Set while free space is below the reserve: what every write answers without reaching LMDB. */
  #lowOnSpace: InsufficientStorage | undefined;
  /** Message bytes written since free space was last sampled. */
  #bytesSinceCheck = 0;
  #checking: Promise<void> | undefined;
  #spaceTimer: NodeJS.Timeout | undefined;

  /** Use createLmdbStore, which opens the environment first. */
  constructor(root: RootDatabase<string, Digest>, options: LmdbStoreOptions) {
    this.#root = root;
    this.#db = root;
    this.#removed = root.openDB<string, Digest>({
      name: REMOVED_DB,
      encoding: 'string',
      keyEncoding: 'binary',
      compression: false,
      cache: false,
    });
    this.#path = options.path;
    this.#timeoutMs = options.timeoutMs;
    this.#reserveBytes = options.diskReserveBytes ?? 0;
    this.#logger = options.logger;
    if (this.#reserveBytes > 0) {
      this.#spaceTimer = setInterval(() => void this.#checkSpace(), SPACE_CHECK_INTERVAL_MS).unref();
      void this.#checkSpace();
    }
  }

  /** Resolves once free space has been sampled the first time. */
  async ready(): Promise<void> {
    await this.#checking;
  }

  async put(digest: Digest, message: string): Promise<void> {
    // Always written, even when the digest is already stored: the copy found may belong to another
    // worker's commit that is visible but not yet flushed, and `flushed` only covers this
    // process's own writes; writing also repairs a corrupt copy.
    await this.putMany([[digest, message]]);
  }

  async putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    if (entries.length === 0) return;
    const length = entries.reduce((sum, [, message]) => sum + message.length, 0);
    // Each put is conditional on its digest not being on the denylist, checked by LMDB's writer
    // inside the transaction that would store it: a removal committed first always wins.
    const stored = await this.#write(length, () =>
      entries.map(([digest, message]) =>
        this.#removed.ifNoExists(digest, () => void this.#db.put(digest, message)),
      ),
    );
    if (stored.includes(false)) throw new MessageRemoved();
  }

  /**
   * Deletes the message and lists its digest on the denylist in one write transaction, durable
   * before it resolves, like a put.
   */
  async remove(digest: Digest): Promise<RemovalOutcome> {
    const [outcome] = await this.#write(0, () => [
      this.#root.transaction((): RemovalOutcome => {
        if (this.#removed.doesExist(digest)) return 'already_removed';
        const stored = this.#db.doesExist(digest);
        void this.#removed.put(digest, new Date().toISOString());
        if (stored) void this.#db.remove(digest);
        return stored ? 'removed' : 'not_stored';
      }),
    ]);
    return outcome as RemovalOutcome;
  }

  removedDigests(): AsyncIterable<Digest> {
    return Readable.from(
      this.#removed.getKeys({ snapshot: true }).map((key) => Buffer.from(key as Uint8Array)),
    );
  }

  /**
   * Issues the writes (one turn, so one transaction), then waits until they are on disk; refuses
   * them at once while free space is below the reserve. `length` (UTF-16 units of the messages)
   * counts towards the next sample of free space.
   */
  async #write(length: number, issue: () => LmdbWrite[]): Promise<unknown[]> {
    if (this.#lowOnSpace !== undefined) throw this.#lowOnSpace;
    try {
      const results = await withDeadline(this.#durable(issue), this.#timeoutMs, this.kind);
      this.#writeFailure = undefined;
      return results;
    } catch (error) {
      this.#writeFailure = error as DigestdError;
      // Another process may have taken the space: stop asking LMDB as soon as that is known.
      if (error instanceof InsufficientStorage) void this.#checkSpace();
      throw error;
    } finally {
      this.#bytesSinceCheck += length;
      if (this.#bytesSinceCheck * RESERVE_SHARE_BETWEEN_CHECKS > this.#reserveBytes) void this.#checkSpace();
    }
  }

  /**
   * Samples free space and refuses or resumes writes by the reserve, one sample at a time; the
   * log says when refusing starts and ends.
   */
  #checkSpace(): Promise<void> {
    if (this.#reserveBytes === 0) return Promise.resolve();
    this.#checking ??= (async () => {
      this.#bytesSinceCheck = 0;
      try {
        const free = await this.#freeBytes();
        if (free === undefined) return;
        if (free >= this.#reserveBytes) {
          if (this.#lowOnSpace !== undefined) {
            this.#logger?.info(
              { freeBytes: free, path: this.#path },
              'disk space is back above --disk-reserve: writes resume',
            );
          }
          this.#lowOnSpace = undefined;
          return;
        }
        if (this.#lowOnSpace === undefined) {
          this.#logger?.warn(
            { freeBytes: free, reserveBytes: this.#reserveBytes, path: this.#path },
            'disk space is below --disk-reserve: writes answer 507 until space is freed',
          );
        }
        this.#lowOnSpace = new InsufficientStorage(
          `The filesystem of the LMDB store at ${this.#path} has ${free} bytes free, under the ` +
            `reserve of ${this.#reserveBytes} bytes (--disk-reserve); writes resume once space is freed.`,
        );
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }

  /** Issues the writes and resolves with what each one's commit resolved with, once on disk. */
  async #durable(issue: () => LmdbWrite[]): Promise<unknown[]> {
    try {
      const writes = issue();
      // Each write observed on its own: a failed commit rejects all of them, and each rejection
      // carries a `commitError` promise of its own to observe as well.
      const committed = await Promise.allSettled(writes.map((write) => withCommitError(write)));
      const results: unknown[] = [];
      for (const outcome of committed) {
        if (outcome.status === 'rejected') throw outcome.reason;
        results.push(outcome.value);
      }
      // The commits above are visible but maybe not yet on disk; these resolve once they are.
      // (A flush that fails never resolves: the deadline around this answers for it.)
      await Promise.all(writes.map((write) => write.flushed ?? this.#root.flushed));
      return results;
    } catch (error) {
      throw await this.#describeFailure(error);
    }
  }

  /** InsufficientStorage when the write failed for lack of room, StoreUnavailable otherwise. */
  async #describeFailure(error: unknown): Promise<DigestdError> {
    if (error instanceof DigestdError) return error;
    const code = errorCode(error);
    const free = await this.#freeBytes();
    if ((code !== undefined && OUT_OF_SPACE.has(code)) || (free !== undefined && free < MIN_FREE_BYTES)) {
      return new InsufficientStorage(
        `The LMDB store at ${this.#path} is out of space${free === undefined ? '' : ` (${free} bytes free)`}; ` +
          'writes resume once space is freed.',
        { cause: error },
      );
    }
    return new StoreUnavailable('The LMDB store failed to write.', { cause: error });
  }

  /** Bytes this process may still write on the data directory's filesystem, when it can tell. */
  async #freeBytes(): Promise<number | undefined> {
    try {
      const stats = await statfs(this.#path);
      // Root may also use the blocks reserved for it.
      return stats.bsize * (process.getuid?.() === 0 ? stats.bfree : stats.bavail);
    } catch {
      return undefined;
    }
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- a read that throws rejects
  async get(digest: Digest): Promise<string | undefined | Removed> {
    return this.getSync(digest);
  }

  /** lmdb-js reads synchronously, from the memory map: never MUST_WAIT. The denylist only on a miss. */
  getSync(digest: Digest): string | undefined | Removed {
    try {
      const message = this.#db.get(digest);
      if (message !== undefined) return message;
      return this.#removed.doesExist(digest) ? REMOVED : undefined;
    } catch (error) {
      throw new StoreUnavailable('The LMDB store failed to read.', { cause: error });
    }
  }

  has(digest: Digest): Promise<boolean> {
    try {
      return Promise.resolve(this.#db.doesExist(digest));
    } catch (error) {
      return Promise.reject(new StoreUnavailable('The LMDB store failed to read.', { cause: error }));
    }
  }

  /**
   * Answers when the environment reads and writes work. Rejects with InsufficientStorage while
   * free space is below the reserve (reads still work); after a failed write it tries one of its
   * own, so readiness (and writes) come back once the cause is gone.
   */
  async ping(): Promise<void> {
    try {
      this.#root.getStats();
    } catch (error) {
      throw new StoreUnavailable('The LMDB store does not answer.', { cause: error });
    }
    if (this.#lowOnSpace !== undefined) throw this.#lowOnSpace;
    if (this.#writeFailure !== undefined) {
      await this.#write(0, () => [
        this.#root.transaction(() => {
          void this.#root.put(PROBE_KEY, '');
          return this.#root.remove(PROBE_KEY);
        }),
      ]);
    }
  }

  entries(): AsyncIterable<readonly [Digest, string]> {
    // One read transaction for the whole walk (lmdb-js's range snapshot), in key order, as a
    // stream so long walks yield to the event loop. The snapshot keeps the pages it sees from reuse
    // until the walk ends, so the file may grow by what is written meanwhile.
    return Readable.from(
      this.#db
        .getRange({ snapshot: true })
        .filter(({ key }) => key.length === 32)
        .map(({ key, value }) => [Buffer.from(key), value] as const),
    );
  }

  /** The main database's entries but the one that holds the denylist. */
  count(): Promise<number | undefined> {
    return Promise.resolve(this.#db.getCount() - 1);
  }

  /**
   * Waits (within the timeout) for writes still being flushed, then closes the environment. After
   * a failed commit lmdb-js never settles its flush, and its close() waits for that flush: past the
   * timeout the environment is left for the process's exit to release. Nothing acknowledged depends
   * on it: a write is acknowledged only once flushed, and LMDB needs no close to stay consistent.
   */
  async close(): Promise<void> {
    clearInterval(this.#spaceTimer);
    const root = this.#root;
    try {
      await withDeadline(
        (async () => {
          await root.flushed;
          await root.close();
        })(),
        this.#timeoutMs,
        this.kind,
      );
    } catch (error) {
      this.#logger?.warn(
        { err: error },
        'the LMDB store did not close in time (a failed write is never flushed); the exit releases it',
      );
    }
  }
}

/**
 * lmdb-js rejects the writes of a failed commit with "Commit failed (see commitError for details)"
 * and a `commitError` promise that rejects with the cause (ENOSPC, EIO, ...). Both are observed
 * here, and the rejection passed on names the cause.
 */
async function withCommitError(write: Promise<unknown>): Promise<unknown> {
  try {
    return await write;
  } catch (error) {
    const commitError = (error as { commitError?: PromiseLike<unknown> } | undefined)?.commitError;
    if (commitError === undefined) throw error;
    let cause: unknown = error;
    try {
      await commitError;
    } catch (reason) {
      cause = reason;
    }
    throw new Error(`LMDB commit failed: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/** The error number (lmdb-js) or name (Node) of an error or of its causes. */
function errorCode(error: unknown): number | string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'number' || typeof code === 'string') return code;
    current = current.cause;
  }
  return undefined;
}

/** Opens (creating if needed) the LMDB environment in `options.path`. */
export async function createLmdbStore(options: LmdbStoreOptions): Promise<LmdbStore> {
  if (options.mustExist === true) {
    const found = await stat(path.join(options.path, 'data.mdb')).catch(() => undefined);
    if (found === undefined) {
      throw new StoreNotFound(`There is no LMDB store at ${options.path} (no data.mdb there).`);
    }
  }
  try {
    await createDirectory(options.path);
    // txnStartThreshold is documented in lmdb-js's README but missing from its types.
    const lmdbOptions: RootDatabaseOptionsWithPath & { txnStartThreshold: number } = {
      path: options.path,
      // Always a directory, even when its name has a dot (lmdb-js would otherwise take it for a file).
      noSubdir: false,
      encoding: 'string',
      keyEncoding: 'binary',
      compression: false,
      mapSize: options.mapSize ?? 2 ** 40,
      // Commit without waiting for fsync, then await each write's own `flushed` before acknowledging.
      overlappingSync: true,
      separateFlushed: true,
      // lmdb-js's event-turn batching adds a write of its own to each turn's transaction and drops
      // its promise, which rejects unobserved (and so crashes the worker) when that commit fails.
      // Writes of one turn still share a transaction: lmdb-js starts it on the next setImmediate.
      eventTurnBatching: false,
      // ...and only then, however many: lmdb-js's default starts a transaction once a handful of
      // writes are pending, which under load splits a turn's writes into several small commits, each
      // copying its own B-tree pages and syncing on its own; that costs most where several
      // workers commit to one file.
      txnStartThreshold: ONE_TRANSACTION_PER_TURN,
      // Messages are immutable; no need for lmdb-js's own object cache on top of the page cache.
      cache: false,
    };
    const root = openLmdb<string, Digest>(lmdbOptions);
    return new LmdbStore(root, options);
  } catch (error) {
    throw new StoreUnavailable(`Cannot open the LMDB store at ${options.path}.`, { cause: error });
  }
}
