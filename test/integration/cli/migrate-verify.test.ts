import { runDigestd } from '../../harness/digestd.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { digestOf, formatDigest } from '../../../src/digest.js';
import { createLmdbStore } from '../../../src/store/lmdb.js';
import { createPostgresStore } from '../../../src/store/postgres.js';
import { createRedisStore } from '../../../src/store/redis.js';
import { startRedisServer, type RedisServerProcess } from '../../helpers/redis-server.js';
import { temporaryDirectory } from '../../helpers/server.js';
import { STORE_TIMEOUT_MS } from '../../helpers/store-options.js';
import {
  dropPostgresStore,
  postgresAvailable,
  redisBinariesAvailable,
  serviceSkip,
  TEST_POSTGRES_URL,
} from '../../helpers/services.js';

const digestd = (args: string[]) => runDigestd(args);

const skip =
  (await serviceSkip('PostgreSQL', () => postgresAvailable(), 'bash .ci/services starts it')) ??
  (await serviceSkip('redis-server', redisBinariesAvailable, 'apt-get install redis-server'));

const directory = await temporaryDirectory('digestd-migrate-');
const table = `digestd_migrate_${process.pid}_${randomBytes(4).toString('hex')}`;
const postgresUrl = `${TEST_POSTGRES_URL}?table=${table}`;
const redis: RedisServerProcess | undefined = skip
  ? undefined
  : await startRedisServer({ directory: `${directory}/redis` });
const redisUrl = `redis://127.0.0.1:${redis?.port ?? 0}`;

after(async () => {
  await redis?.kill();
  await rm(directory, { recursive: true, force: true });
  if (skip) return;
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  await dropPostgresStore(client, table);
  await client.end();
});

const messages = Array.from({ length: 1200 }, (_, index) => `migrated ${index} ${'é'.repeat(index % 7)}`);

describe('digestd migrate and verify', { skip: skip ?? false }, () => {
  it('copies every message from LMDB to PostgreSQL, with progress', async () => {
    const source = await createLmdbStore({ path: `${directory}/lmdb`, timeoutMs: STORE_TIMEOUT_MS });
    await source.putMany(messages.map((message) => [digestOf(message), message] as const));
    await source.close();
    // An interrupted earlier run left part of the data in the target already.
    const partial = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    await partial.putMany(messages.slice(0, 200).map((message) => [digestOf(message), message] as const));
    await partial.close();

    const result = await digestd(['migrate', '--from', `lmdb:${directory}/lmdb`, '--to', postgresUrl]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /copied 1000, already present 200, mismatched 0/);
    assert.match(result.stderr, /migrate: 1200\/1200 \(100%\) \d+\/s/);

    const target = createPostgresStore({
      connectionString: TEST_POSTGRES_URL,
      table,
      timeoutMs: STORE_TIMEOUT_MS,
    });
    try {
      assert.equal(await target.count(), 1200);
      for (const message of [messages[0]!, messages[777]!, messages[1199]!]) {
        assert.equal(await target.get(digestOf(message)), message);
      }
    } finally {
      await target.close();
    }
  });

  it('is idempotent: a second run copies nothing', async () => {
    const result = await digestd(['migrate', '--from', `lmdb:${directory}/lmdb`, '--to', postgresUrl]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /copied 0, already present 1200, mismatched 0/);
  });

  it('copies from PostgreSQL to Redis, and verify finds everything intact', async () => {
    const migrated = await digestd(['migrate', '--from', postgresUrl, '--to', redisUrl]);
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.match(migrated.stdout, /copied 1200, already present 0, mismatched 0/);
    const verified = await digestd(['verify', '--store', redisUrl]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /checked 1200, mismatched 0/);
  });

  it('verify reports a corrupted entry and exits 1; migrate refuses to copy it', async () => {
    const victim = messages[42]!;
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    try {
      await client.query(`UPDATE ${table} SET message = $1 WHERE digest = $2`, [
        Buffer.from('tampered'),
        digestOf(victim),
      ]);
    } finally {
      await client.end();
    }
    const verified = await digestd(['verify', '--store', postgresUrl]);
    assert.equal(verified.code, 1);
    assert.match(verified.stdout, /checked 1200, mismatched 1/);
    assert.ok(verified.stderr.includes(formatDigest(digestOf(victim))), verified.stderr);

    const copy = await digestd(['migrate', '--from', postgresUrl, '--to', `lmdb:${directory}/copy`]);
    assert.equal(copy.code, 1);
    assert.match(copy.stdout, /copied 1199, already present 0, mismatched 1/);
    const copied = await createLmdbStore({ path: `${directory}/copy`, timeoutMs: STORE_TIMEOUT_MS });
    try {
      assert.equal(await copied.has(digestOf(victim)), false);
    } finally {
      await copied.close();
    }
  });

  it('verify of an intact LMDB store exits 0', async () => {
    const result = await digestd(['verify', '--store', `lmdb:${directory}/lmdb`]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /checked 1200, mismatched 0/);
  });

  it('verify with the store in a Redis key holding a wrong message exits 1', async () => {
    const store = createRedisStore({ url: redisUrl, timeoutMs: STORE_TIMEOUT_MS });
    try {
      // Stored under the digest of another message: what a bit flip or a bad import looks like.
      await store.put(digestOf('the right one'), 'a wrong one');
    } finally {
      await store.close();
    }
    const result = await digestd(['verify', '--store', redisUrl]);
    assert.equal(result.code, 1);
    assert.ok(result.stderr.includes(formatDigest(digestOf('the right one'))));
  });

  it('migrate needs --from and --to, naming both', async () => {
    const result = await digestd(['migrate']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--from/);
    assert.match(result.stderr, /--to/);
  });

  it('a store that cannot be reached stops migrate with exit 1 and the reason', async () => {
    const result = await digestd([
      'migrate',
      '--from',
      'redis://127.0.0.1:1',
      '--to',
      `lmdb:${directory}/never`,
      '--store-timeout',
      '300',
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^digestd: Cannot reach the store redis:\/\/127\.0\.0\.1:1 \(--from\): [^\n]+\.\n$/,
    );
  });

  it('refuses a source LMDB path that holds no store with exit 2, naming it, and creates nothing', async () => {
    const missing = `${directory}/mistyped`;
    const verify = await digestd(['verify', '--store', `lmdb:${missing}`]);
    assert.equal(verify.code, 2);
    assert.equal(
      verify.stderr,
      `digestd: --store: There is no LMDB store at ${missing} (no data.mdb there).\n`,
    );
    const migrate = await digestd([
      'migrate',
      '--from',
      `lmdb:${missing}`,
      '--to',
      `lmdb:${directory}/target`,
    ]);
    assert.equal(migrate.code, 2);
    assert.match(migrate.stderr, /--from: There is no LMDB store at \S+mistyped/);
    for (const path of [missing, `${directory}/target`]) {
      await assert.rejects(stat(path), { code: 'ENOENT' }, `${path} was not created`);
    }
  });
});
