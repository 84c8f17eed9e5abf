import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { digestOf } from '../../../src/digest.js';
import { createPostgresStore } from '../../../src/store/postgres.js';
import { postgresForTest, TEST_POSTGRES_URL } from '../../helpers/services.js';
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
  for (const restored of restoredTables) await client.query(`DROP TABLE IF EXISTS ${restored}`);
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
      await client.query(`DROP TABLE IF EXISTS ${fresh}`);
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
