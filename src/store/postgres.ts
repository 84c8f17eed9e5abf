import { createHash } from 'node:crypto';
import pg from 'pg';
import { parseDigest, type Digest } from '../digest.js';
import { InvalidConfig, MessageRemoved } from '../errors.js';
import { asStoreUnavailable, withDeadline } from './deadline.js';
import { HeartbeatFeed } from './removal-feed.js';
import { putEach, TurnBatch } from './turn-batch.js';
import {
  MUST_WAIT,
  REMOVED,
  type MessageStore,
  type MustWait,
  type RemovalOutcome,
  type RemovalWatcher,
  type Removed,
} from './types.js';
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

/**
 * The SQLSTATE the guard trigger raises for a put of a removed digest (a class of our own: no
 * standard one starts with DG).
 */
const REMOVED_SQLSTATE = 'DG410';

/** PostgreSQL's longest identifier, in bytes. */
const MAX_IDENTIFIER = 63;

/** How long a LISTEN connection waits before connecting again after it failed. */
const RELISTEN_DELAY_MS = 500;

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
 *
 * Removed digests are rows of a second table, `<table>_removed` (digest, removed_at). A removal is
 * one transaction: it takes the message's row (inserting a placeholder when there is none, so that
 * a concurrent put of that digest waits for it), lists the digest, deletes the row and NOTIFYs the
 * other nodes, all committed together. An AFTER INSERT trigger on the messages refuses (SQLSTATE
 * DG410) a row whose digest is listed: its query takes a snapshot of its own, after any removal
 * the insert waited for, so a put racing a removal can never bring the message back.
 */
export class PostgresStore implements MessageStore {
  readonly kind = 'postgres';
  readonly #pool: pg.Pool;
  readonly #table: string;
  readonly #tableName: string;
  /** The denylist table, its guard function and trigger, and the NOTIFY channel (all quoted). */
  readonly #removedTable: string;
  readonly #guardFunction: string;
  readonly #removeFunction: string;
  readonly #guardTrigger: string;
  readonly #channel: string;
  readonly #connectionString: string;
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
    const parts = table.split('.');
    const quoted = (suffix: string) =>
      parts
        .map((part, index) =>
          pg.escapeIdentifier(
            index === parts.length - 1 ? part.slice(0, MAX_IDENTIFIER - suffix.length) + suffix : part,
          ),
        )
        .join('.');
    this.#table = quoted('');
    this.#removedTable = quoted('_removed');
    this.#guardFunction = quoted('_refuse_removed');
    this.#removeFunction = quoted('_remove');
    // A trigger's name is not schema-qualified.
    this.#guardTrigger = pg.escapeIdentifier('digestd_refuse_removed');
    this.#channel = `digestd_removed_${createHash('sha256').update(table).digest('hex').slice(0, 16)}`;
    this.#connectionString = options.connectionString;
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
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.#removedTable} (
           digest bytea PRIMARY KEY CHECK (octet_length(digest) = 32),
           removed_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      // VOLATILE (the default): its query sees removals committed after the INSERT began, such as
      // the one the INSERT waited for on the digest's row.
      await client.query(
        `CREATE OR REPLACE FUNCTION ${this.#guardFunction}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM ${this.#removedTable} WHERE digest = NEW.digest) THEN
             RAISE EXCEPTION USING ERRCODE = '${REMOVED_SQLSTATE}',
               MESSAGE = 'digestd: the message was removed', DETAIL = encode(NEW.digest, 'hex');
           END IF;
           RETURN NULL;
         END $$`,
      );
      // A removal in one statement (one round trip, one short transaction): see remove().
      await client.query(
        `CREATE OR REPLACE FUNCTION ${this.#removeFunction}(d bytea) RETURNS text LANGUAGE plpgsql AS $$
         DECLARE
           outcome text;
         BEGIN
           IF EXISTS (SELECT 1 FROM ${this.#removedTable} WHERE digest = d) THEN
             DELETE FROM ${this.#table} WHERE digest = d;
             RETURN 'already_removed';
           END IF;
           BEGIN
             INSERT INTO ${this.#table} (digest, message) VALUES (d, '') ON CONFLICT (digest) DO NOTHING;
             IF FOUND THEN
               outcome := 'not_stored';
             ELSE
               PERFORM 1 FROM ${this.#table} WHERE digest = d FOR UPDATE;
               outcome := CASE WHEN FOUND THEN 'removed' ELSE 'not_stored' END;
             END IF;
             INSERT INTO ${this.#removedTable} (digest) VALUES (d) ON CONFLICT (digest) DO NOTHING;
             DELETE FROM ${this.#table} WHERE digest = d;
           EXCEPTION WHEN SQLSTATE '${REMOVED_SQLSTATE}' THEN
             RETURN 'already_removed';
           END;
           PERFORM pg_notify('${this.#channel}', encode(d, 'hex'));
           RETURN outcome;
         END $$`,
      );
      const trigger = await client.query(
        'SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2',
        [this.#table, 'digestd_refuse_removed'],
      );
      if (trigger.rowCount === 0) {
        await client.query(
          `CREATE TRIGGER ${this.#guardTrigger} AFTER INSERT ON ${this.#table}
           FOR EACH ROW EXECUTE FUNCTION ${this.#guardFunction}()`,
        );
      }
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
      this.#track(
        this.#insert(chunk).then(
          () => chunk.forEach((put) => put.resolve()),
          (error: unknown) =>
            isRemovedError(error)
              ? this.#track(this.#refuseRemoved(chunk, error))
              : chunk.forEach((put) => put.reject(error)),
        ),
      );
    }
  }

  /** Keeps a statement's promise until it settles, so that close() waits for it. */
  #track(statement: Promise<unknown>): void {
    this.#inFlight.add(statement);
    void statement.finally(() => this.#inFlight.delete(statement));
  }

  /**
   * The guard refused a whole statement for a removed digest: the puts of every listed digest of
   * the chunk are refused, and the others sent again together. The digest the guard named is
   * refused in any case, so each round leaves fewer puts.
   */
  async #refuseRemoved(chunk: readonly PendingPut[], error: unknown): Promise<void> {
    try {
      const named = removedDigestOf(error);
      const { rows } = await this.#query<{ digest: Buffer }>(
        `SELECT digest FROM ${this.#removedTable} WHERE digest = ANY($1::bytea[])`,
        [chunk.map((put) => put.digest)],
      );
      const listed = new Set(rows.map((row) => row.digest.toString('hex')));
      if (named !== undefined) listed.add(named);
      const rest: PendingPut[] = [];
      for (const put of chunk) {
        if (listed.has(put.digest.toString('hex'))) put.reject(new MessageRemoved());
        else rest.push(put);
      }
      if (rest.length === chunk.length) throw error;
      if (rest.length > 0) this.#send(rest);
    } catch (failure) {
      for (const put of chunk) put.reject(failure);
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

  /**
   * One round trip: the message, else a NULL row when the digest is listed as removed. The Append
   * of a UNION ALL under LIMIT 1 runs its second branch only when the first found nothing, so a
   * hit never reads the denylist.
   */
  async get(digest: Digest): Promise<string | undefined | Removed> {
    const result = await withDeadline(
      this.#query<{ message: Buffer | null }>(
        `SELECT message FROM ${this.#table} WHERE digest = $1
         UNION ALL SELECT NULL FROM ${this.#removedTable} WHERE digest = $1 LIMIT 1`,
        [digest],
      ),
      this.#timeoutMs,
      this.kind,
    );
    const row = result.rows[0];
    if (row === undefined) return undefined;
    return row.message === null ? REMOVED : row.message.toString('utf8');
  }

  /**
   * One statement, so one transaction and one round trip (a function made by the migration): it
   * takes the message's row, or inserts a placeholder row so that a put of the same digest waits
   * for this commit (whose guard then sees the digest listed); lists the digest, deletes the row
   * and notifies the other nodes (delivered at commit). When another removal of the digest commits
   * while this one waits for the row, the guard refuses the placeholder: already removed.
   */
  async remove(digest: Digest): Promise<RemovalOutcome> {
    const result = await withDeadline(
      this.#query<{ outcome: RemovalOutcome }>(`SELECT ${this.#removeFunction}($1) AS outcome`, [digest]),
      this.#timeoutMs,
      this.kind,
    );
    return result.rows[0]!.outcome;
  }

  /** The denylist, in digest order, through a cursor in one snapshot (as entries()). */
  async *removedDigests(): AsyncIterable<Digest> {
    for await (const row of this.#walk<{ digest: Buffer }>(
      `SELECT digest FROM ${this.#removedTable} ORDER BY digest`,
    )) {
      yield row.digest;
    }
  }

  /**
   * LISTENs on a connection of its own (not the pool's) and checks the channel with heartbeats
   * NOTIFYed through the pool; a failed connection is reported lost and made again.
   */
  watchRemovals(watcher: RemovalWatcher): { close(): Promise<void> } {
    let client: pg.Client | undefined;
    let closed = false;
    let retry: NodeJS.Timeout | undefined;
    const feed = new HeartbeatFeed({
      watcher,
      publish: async (text) => {
        await withDeadline(
          this.#query('SELECT pg_notify($1, $2)', [this.#channel, text]),
          this.#timeoutMs,
          this.kind,
        );
      },
      parseDigest,
    });
    const listen = async () => {
      if (closed) return;
      const connection = new pg.Client({
        connectionString: this.#connectionString,
        connectionTimeoutMillis: this.#timeoutMs,
        keepAlive: true,
        application_name: 'digestd-listen',
      });
      client = connection;
      let failed = false;
      const fail = () => {
        if (failed) return;
        failed = true;
        feed.disconnected();
        void connection.end().catch(() => {});
        if (!closed) retry = setTimeout(() => void listen(), RELISTEN_DELAY_MS);
      };
      connection.on('error', fail);
      connection.on('end', fail);
      connection.on('notification', (notification) => {
        if (notification.channel === this.#channel && notification.payload !== undefined) {
          feed.receive(notification.payload);
        }
      });
      try {
        await connection.connect();
        await connection.query(`LISTEN ${pg.escapeIdentifier(this.#channel)}`);
        if (closed) await connection.end();
        else feed.subscribed();
      } catch {
        fail();
      }
    };
    feed.start();
    void listen();
    return {
      close: async () => {
        closed = true;
        clearTimeout(retry);
        feed.stop();
        await client?.end().catch(() => {});
      },
    };
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
    for await (const row of this.#walk<{ digest: Buffer; message: Buffer }>(
      `SELECT digest, message FROM ${this.#table} ORDER BY digest`,
    )) {
      yield [row.digest, row.message.toString('utf8')] as const;
    }
  }

  /** The rows of `select`, `PAGE_ROWS` at a time, through a cursor in one snapshot. */
  async *#walk<R extends pg.QueryResultRow>(select: string): AsyncIterable<R> {
    if (this.#closed) throw asStoreUnavailable(new Error('the store is closed'), this.kind);
    await withDeadline(this.#ensureSchema(), this.#timeoutMs, this.kind);
    const client = await withDeadline(this.#pool.connect(), this.#timeoutMs, this.kind);
    let failed = false;
    try {
      const step = <R extends pg.QueryResultRow>(text: string) =>
        withDeadline(client.query<R>(text), this.#timeoutMs * 5, this.kind);
      await step('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await step(`DECLARE digestd_entries NO SCROLL CURSOR FOR ${select}`);
      for (;;) {
        const page = await step<R>(`FETCH ${PAGE_ROWS} FROM digestd_entries`);
        for (const row of page.rows) yield row;
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

/** The hex digest the guard trigger names in its error (its DETAIL), when it does. */
function removedDigestOf(error: unknown): string | undefined {
  const detail = (error as { detail?: unknown } | undefined)?.detail;
  return typeof detail === 'string' && /^[0-9a-f]{64}$/.test(detail) ? detail : undefined;
}

/** A put refused by the guard trigger: its digest is listed as removed. */
function isRemovedError(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 3; depth += 1) {
    if ((current as { code?: unknown }).code === REMOVED_SQLSTATE) return true;
    current = current.cause;
  }
  return false;
}

/** Creates a PostgreSQL store; nothing connects until the first operation (or `ready()`). */
export function createPostgresStore(options: PostgresStoreOptions): PostgresStore {
  return new PostgresStore(options);
}
