import pg from 'pg';
import type { Digest } from '../digest.js';
import { InvalidConfig } from '../errors.js';
import { asStoreUnavailable, withDeadline } from './deadline.js';
import { putEach, TurnBatch } from './turn-batch.js';
import { MUST_WAIT, type MessageStore, type MustWait } from './types.js';
import { isTableName } from './url.js';

/** Options of the PostgreSQL store. */
export interface PostgresStoreOptions {
  /** libpq-style URL, e.g. `postgres://digestd@db.internal:5432/digestd`. */
  connectionString: string;
  /**
   * Table holding the messages, optionally schema-qualified (`schema.table`). Created on first use.
   * @default "digestd_messages"
   */
  table?: string;
  /** Most connections the pool opens. @default 10 */
  poolSize?: number;
  /** Time any operation (connect, query) may take before it fails with StoreUnavailable, in ms. */
  timeoutMs: number;
  /**
   * Most concurrent puts combined into one multi-row INSERT (one round trip, one commit, one WAL
   * flush). 1 sends one INSERT per put. @default 256
   */
  batchMaxRows?: number;
}

const PAGE_ROWS = 1000;

interface PendingPut {
  digest: Digest;
  message: Buffer;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Messages in one PostgreSQL table: `digest bytea PRIMARY KEY` (32 bytes), `message bytea` (the
 * UTF-8 bytes: text columns cannot hold U+0000). Puts are `INSERT … ON CONFLICT DO NOTHING` in
 * autocommit, so a put resolves only after its transaction committed (with the server's
 * synchronous_commit, on by default, that means flushed to the WAL). Puts issued in the same turn
 * of the event loop share one multi-row INSERT.
 */
export class PostgresStore implements MessageStore {
  readonly kind = 'postgres';
  readonly #pool: pg.Pool;
  readonly #table: string;
  readonly #tableName: string;
  readonly #timeoutMs: number;
  readonly #batchMaxRows: number;
  #schema: Promise<void> | undefined;
  readonly #puts = new TurnBatch<PendingPut>((puts) => this.#send(puts));
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(options: PostgresStoreOptions) {
    const table = options.table ?? 'digestd_messages';
    if (!isTableName(table)) {
      throw new InvalidConfig([`"${table}" is not a valid table name (letters, digits, _).`]);
    }
    this.#tableName = table;
    this.#table = table
      .split('.')
      .map((part) => pg.escapeIdentifier(part))
      .join('.');
    this.#timeoutMs = options.timeoutMs;
    this.#batchMaxRows = Math.max(1, options.batchMaxRows ?? 256);
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: this.#timeoutMs,
      query_timeout: this.#timeoutMs,
      statement_timeout: this.#timeoutMs,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'digestd',
    });
    // An idle connection that breaks (server restart, network) is reported here; without a
    // listener it would crash the process. The pool drops it and connects anew on next use.
    this.#pool.on('error', () => {});
  }

  /** Runs the idempotent migration: creates the table if it does not exist. */
  ready(): Promise<void> {
    return withDeadline(this.#ensureSchema(), this.#timeoutMs, this.kind);
  }

  #ensureSchema(): Promise<void> {
    this.#schema ??= this.#migrate().catch((error: unknown) => {
      this.#schema = undefined; // try again on the next operation
      throw error;
    });
    return this.#schema;
  }

  async #migrate(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      // Nodes starting together would otherwise race on CREATE TABLE IF NOT EXISTS.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`digestd:${this.#tableName}`]);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.#table} (
           digest bytea PRIMARY KEY CHECK (octet_length(digest) = 32),
           message bytea NOT NULL
         )`,
      );
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  async #query<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.#closed) throw asStoreUnavailable(new Error('the store is closed'), this.kind);
    await this.#ensureSchema();
    return this.#pool.query<R>(text, values);
  }

  put(digest: Digest, message: string): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.#puts.push({ digest, message: Buffer.from(message, 'utf8'), resolve, reject });
    });
    return withDeadline(done, this.#timeoutMs, this.kind);
  }

  /** Sends the puts gathered during one turn of the event loop, `batchMaxRows` per statement. */
  #send(pending: PendingPut[]): void {
    for (let start = 0; start < pending.length; start += this.#batchMaxRows) {
      const chunk = pending.slice(start, start + this.#batchMaxRows);
      const insert = this.#insert(chunk).then(
        () => chunk.forEach((put) => put.resolve()),
        (error: unknown) => chunk.forEach((put) => put.reject(error)),
      );
      this.#inFlight.add(insert);
      void insert.finally(() => this.#inFlight.delete(insert));
    }
  }

  #insert(puts: readonly PendingPut[]): Promise<unknown> {
    // One row per digest: the same message posted twice at once needs one row, not two.
    const unique = new Map<string, PendingPut>();
    for (const put of puts) unique.set(put.digest.toString('latin1'), put);
    const values: Buffer[] = [];
    const rows: string[] = [];
    for (const put of unique.values()) {
      rows.push(`($${values.length + 1}, $${values.length + 2})`);
      values.push(put.digest, put.message);
    }
    return this.#query(
      `INSERT INTO ${this.#table} (digest, message) VALUES ${rows.join(', ')} ON CONFLICT (digest) DO NOTHING`,
      values,
    );
  }

  putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    return putEach(this, entries);
  }

  async get(digest: Digest): Promise<string | undefined> {
    const result = await withDeadline(
      this.#query<{ message: Buffer }>(`SELECT message FROM ${this.#table} WHERE digest = $1`, [digest]),
      this.#timeoutMs,
      this.kind,
    );
    return result.rows[0]?.message.toString('utf8');
  }

  /** Every read waits for the server. */
  getSync(): MustWait {
    return MUST_WAIT;
  }

  async has(digest: Digest): Promise<boolean> {
    const result = await withDeadline(
      this.#query(`SELECT 1 FROM ${this.#table} WHERE digest = $1`, [digest]),
      this.#timeoutMs,
      this.kind,
    );
    return result.rowCount === 1;
  }

  async ping(): Promise<void> {
    await withDeadline(this.#query('SELECT 1', []), this.#timeoutMs, this.kind);
  }

  /**
   * Walks the table in digest order through a cursor inside one REPEATABLE READ transaction, so the
   * walk sees one snapshot: every row committed before it began, none committed after. Rows come
   * `PAGE_ROWS` at a time; the transaction holds one connection of the pool until the walk ends.
   */
  async *entries(): AsyncIterable<readonly [Digest, string]> {
    if (this.#closed) throw asStoreUnavailable(new Error('the store is closed'), this.kind);
    await withDeadline(this.#ensureSchema(), this.#timeoutMs, this.kind);
    const client = await withDeadline(this.#pool.connect(), this.#timeoutMs, this.kind);
    let failed = false;
    try {
      const step = <R extends pg.QueryResultRow>(text: string) =>
        withDeadline(client.query<R>(text), this.#timeoutMs * 5, this.kind);
      await step('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await step(
        `DECLARE digestd_entries NO SCROLL CURSOR FOR SELECT digest, message FROM ${this.#table} ORDER BY digest`,
      );
      for (;;) {
        const page = await step<{ digest: Buffer; message: Buffer }>(
          `FETCH ${PAGE_ROWS} FROM digestd_entries`,
        );
        for (const row of page.rows) yield [row.digest, row.message.toString('utf8')] as const;
        if (page.rows.length < PAGE_ROWS) break;
      }
      await step('COMMIT');
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // A walk ended early (or failed) leaves the transaction open: end it before the connection
      // goes back to the pool, or drop a connection that no longer answers.
      if (failed) client.release(true);
      else {
        await client.query('ROLLBACK').then(
          () => client.release(),
          (error: unknown) => client.release(error as Error),
        );
      }
    }
  }

  async count(): Promise<number> {
    const result = await withDeadline(
      this.#query<{ count: string }>(`SELECT count(*) AS count FROM ${this.#table}`, []),
      this.#timeoutMs * 5,
      this.kind,
    );
    return Number(result.rows[0]?.count ?? 0);
  }

  /** Sends the puts not yet sent, waits for those in flight, then closes the pool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#puts.flush();
    await Promise.allSettled([...this.#inFlight]);
    this.#closed = true;
    await this.#pool.end();
  }
}

/** Creates a PostgreSQL store; nothing connects until the first operation (or `ready()`). */
export function createPostgresStore(options: PostgresStoreOptions): PostgresStore {
  return new PostgresStore(options);
}
