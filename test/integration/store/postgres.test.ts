import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf } from '../../../src/digest.js';
import { MessageRemoved } from '../../../src/errors.js';
import { REMOVED } from '../../../src/store/types.js';
import { createPostgresStore } from '../../../src/store/postgres.js';
import { dropPostgresStore, postgresForTest, TEST_POSTGRES_URL } from '../../helpers/services.js';
import { describeStoreConformance } from '../../helpers/store-conformance.js';
import { STORE_TIMEOUT_MS } from '../../helpers/store-options.js';

const { skip, table, proxy, urlThroughProxy } = await postgresForTest(
  'digestd_test',
  'start it on 127.0.0.1:5432 with a database "test" and trust authentication, or set DIGESTD_TEST_POSTGRES_URL (bash .ci/services does this)',
);

const restoredTables: string[] = [];
after(async () => {
  if (skip) return;
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  for (const restored of restoredTables) await dropPostgresStore(client, restored);
  await client.end();
});

describeStoreConformance('postgres', {
  skip,
  open: () =>
    Promise.resolve(createPostgresStore({ connectionString: urlThroughProxy, table, timeoutMs: 1000 })),
  openEmpty: () => {
    restoredTables.push(`${table}_restored_${restoredTables.length + 1}`);
    return Promise.resolve(
      createPostgresStore({
        connectionString: TEST_POSTGRES_URL,
        table: restoredTables.at(-1),
        timeoutMs: 1000,
      }),
    );
  },
  snapshotEntries: true,
  watched: true,
  outage: {
    begin: () => Promise.resolve(proxy?.stall()),
    end: () => Promise.resolve(proxy?.resume()),
  },
});

describe('postgres store specifics', { skip: skip ?? false }, () => {
  it('keeps digests as 32-byte bytea and messages as UTF-8 bytes', async () => {
    const store = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    await store.ready();
    const message = `bytes ${Math.random()} é\u0000`;
    await store.put(digestOf(message), message);
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    try {
      const { rows } = await client.query<{ digest: Buffer; message: Buffer; type: string }>(
        `SELECT digest, message, pg_typeof(digest)::text AS type FROM ${table} WHERE digest = $1`,
        [digestOf(message)],
      );
      assert.equal(rows[0]?.type, 'bytea');
      assert.equal(rows[0]?.digest.length, 32);
      assert.deepEqual(rows[0]?.message, Buffer.from(message, 'utf8'));
    } finally {
      await client.end();
      await store.close();
    }
  });

  it('migrates idempotently when several nodes start at once', async () => {
    const fresh = `${table}_m`;
    const stores = Array.from({ length: 4 }, () =>
      createPostgresStore({ connectionString: TEST_POSTGRES_URL, table: fresh, timeoutMs: STORE_TIMEOUT_MS }),
    );
    try {
      await Promise.all(stores.map((store) => store.ready()));
      await Promise.all(stores.map((store) => store.ready()));
    } finally {
      await Promise.all(stores.map((store) => store.close()));
      const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
      await client.connect();
      await dropPostgresStore(client, fresh);
      await client.end();
    }
  });

  it('batches concurrent puts and gives each its own answer', async () => {
    const store = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      batchMaxRows: 7,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    try {
      const messages = Array.from({ length: 100 }, (_, index) => `batched ${Math.random()} ${index}`);
      await Promise.all(messages.map((message) => store.put(digestOf(message), message)));
      for (const message of messages) assert.equal(await store.get(digestOf(message)), message);
    } finally {
      await store.close();
    }
  });

  it('a removal waits for a put in flight of the same digest, then deletes what it wrote', async () => {
    const store = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    try {
      await store.ready();
      const message = `in flight while removed ${Math.random()}`;
      const digest = digestOf(message);
      // A put whose INSERT has run but not committed yet.
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${table} (digest, message) VALUES ($1, $2)`, [
        digest,
        Buffer.from(message),
      ]);
      const removal = store.remove(digest);
      await sleep(300);
      await client.query('COMMIT');
      assert.equal(await removal, 'removed');
      assert.equal(await store.get(digest), REMOVED);
      assert.equal(await store.has(digest), false);
    } finally {
      await client.query('ROLLBACK').catch(() => {});
      await client.end();
      await store.close();
    }
  });

  it('a put that waited for a removal in flight is refused (the guard sees the removal it waited for)', async () => {
    const store = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    try {
      await store.ready();
      const message = `put while its removal is in flight ${Math.random()}`;
      const digest = digestOf(message);
      // A removal as the store makes it, held open: the placeholder row, then the listing.
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${table} (digest, message) VALUES ($1, '')`, [digest]);
      await client.query(`INSERT INTO ${table}_removed (digest) VALUES ($1)`, [digest]);
      // Observed at once: it settles as soon as the removal commits.
      const put = assert.rejects(store.put(digest, message), MessageRemoved);
      await sleep(300);
      await client.query(`DELETE FROM ${table} WHERE digest = $1`, [digest]);
      await client.query('COMMIT');
      await put;
      assert.equal(await store.get(digest), REMOVED);
    } finally {
      await client.query('ROLLBACK').catch(() => {});
      await client.end();
      await store.close();
    }
  });

  it('refuses a table name that is not an identifier', () => {
    assert.throws(
      () =>
        createPostgresStore({
          connectionString: TEST_POSTGRES_URL,
          table: 'x; DROP TABLE y',
          timeoutMs: STORE_TIMEOUT_MS,
        }),
      /not a valid table name/,
    );
  });
});
