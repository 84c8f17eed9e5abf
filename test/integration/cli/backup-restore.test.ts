import { runDigestd } from '../../harness/digestd.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Agent } from 'node:http';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { openBackup } from '../../../src/backup.js';
import { digestHexOf, formatDigest } from '../../../src/digest.js';
import { startRedisCluster, type RedisCluster } from '../../helpers/redis-cluster.js';
import { startRedisServer, type RedisServerProcess } from '../../helpers/redis-server.js';
import {
  postMessage,
  request,
  startServer,
  temporaryDirectory,
  type RunningServer,
} from '../../helpers/server.js';
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

const directory = await temporaryDirectory('digestd-backup-');
const table = `digestd_backup_${process.pid}_${randomBytes(4).toString('hex')}`;
const redis: RedisServerProcess | undefined = skip
  ? undefined
  : await startRedisServer({ directory: `${directory}/redis` });
const cluster: RedisCluster | undefined = skip ? undefined : await startRedisCluster(3, 0);
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

after(async () => {
  agent.destroy();
  await Promise.all([redis?.kill(), cluster?.stop()]);
  await rm(directory, { recursive: true, force: true });
  if (skip) return;
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  await dropPostgresStore(client, table);
  await client.end();
});

/** Writers POSTing distinct messages until stopped (bounded in count and time), keeping each acknowledged one. */
function writeLoad(server: RunningServer, label: string) {
  const acknowledged: string[] = [];
  let stopped = false;
  const deadline = Date.now() + 60_000;
  const writers = Array.from({ length: 2 }, async (_, writer) => {
    for (let index = 0; !stopped && index < 20_000 && Date.now() < deadline; index += 1) {
      const message = `${label} ${writer} ${index} ${Math.random()}`;
      const reply = await postMessage(server, message, { agent });
      assert.equal(reply.status, 201, reply.body);
      acknowledged.push(message);
    }
  });
  return {
    acknowledged,
    async until(count: number) {
      while (acknowledged.length < count && !stopped) {
        await Promise.race([new Promise((resolve) => setTimeout(resolve, 20)), Promise.all(writers)]);
        if (Date.now() > deadline) throw new Error(`only ${acknowledged.length} writes acknowledged`);
      }
    },
    async stop() {
      stopped = true;
      await Promise.all(writers);
    },
  };
}

/** The digests of every record of a backup file. */
async function digestsIn(file: string): Promise<Set<string>> {
  const digests = new Set<string>();
  for await (const [digest] of (await openBackup(file)).entries()) digests.add(formatDigest(digest));
  return digests;
}

/** GETs each message from the server and returns those it did not answer with. */
async function unserved(server: RunningServer, messages: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (let start = 0; start < messages.length; start += 32) {
    await Promise.all(
      messages.slice(start, start + 32).map(async (message) => {
        const reply = await request(`${server.url}/messages/${digestHexOf(message)}`, { agent });
        if (reply.status !== 200 || reply.json<{ message: string }>().message !== message)
          missing.push(message);
      }),
    );
  }
  return missing;
}

describe('digestd backup and restore', { skip: skip ?? false, timeout: 300_000 }, () => {
  it('a backup taken under write load holds every message acknowledged before it began, and restores into each kind of store', async () => {
    // Each store's backup is restored into the next, empty, store, which is then served and written to.
    const stores = [
      { kind: 'lmdb', url: `lmdb:${directory}/lmdb` },
      { kind: 'postgres', url: `${TEST_POSTGRES_URL}?table=${table}` },
      { kind: 'redis', url: `redis://127.0.0.1:${redis!.port}` },
      { kind: 'redis-cluster', url: cluster!.url },
      { kind: 'lmdb', url: `lmdb:${directory}/lmdb-restored` },
    ];
    /** Messages acknowledged before a backup began: every later store must serve them. */
    const guaranteed: string[] = [];
    let previousBackup: string | undefined;
    for (const [index, { kind, url }] of stores.entries()) {
      if (previousBackup !== undefined) {
        const restored = await digestd(['restore', '--from', previousBackup, '--to', url]);
        assert.equal(restored.code, 0, restored.stderr);
        assert.match(
          restored.stdout,
          /^restore: copied \d+, already present 0, mismatched 0, removed digests listed 0, refused as removed 0 \(backup of a [a-z-]+ store taken [0-9T:.-]+Z\)\n$/,
        );
      }
      const server = await startServer({ args: ['--store', url, '--no-tls', '--workers', '1'] });
      try {
        assert.deepEqual(await unserved(server, guaranteed), [], `${kind} serves every restored message`);
        if (index === stores.length - 1) break;

        const load = writeLoad(server, `${kind} ${index}`);
        try {
          await load.until(200);
          const before = [...load.acknowledged];
          const file = `${directory}/backup-${index}.jsonl${index % 2 === 1 ? '.gz' : ''}`;
          const backup = await digestd(['backup', '--store', url, '--to', file]);
          assert.equal(backup.code, 0, backup.stderr);
          assert.match(
            backup.stdout,
            /^backup: wrote \d+ messages, 0 removed digests, mismatched 0, \d+ bytes in [\d.]+ s to \S+ \(sha256 [0-9a-f]{64}\)\n$/,
          );
          assert.ok(load.acknowledged.length > before.length, 'writes went on while the backup ran');
          const inBackup = await digestsIn(file);
          const missing = [...guaranteed, ...before].filter((message) => !inBackup.has(digestHexOf(message)));
          assert.deepEqual(
            missing,
            [],
            `the ${kind} backup holds every message acknowledged before it began`,
          );
          guaranteed.push(...before);
          const verified = await digestd(['verify', '--backup', file]);
          assert.equal(verified.code, 0, verified.stderr);
          assert.match(verified.stdout, new RegExp(`^verify: checked ${inBackup.size}, mismatched 0\\n$`));
          previousBackup = file;
        } finally {
          await load.stop();
        }
      } finally {
        await server.stop();
      }
    }
  });

  it('restore of a damaged backup exits 1 naming the damage; verify of it too', async () => {
    const file = `${directory}/backup-0.jsonl`;
    const { readFile, writeFile } = await import('node:fs/promises');
    const text = await readFile(file, 'utf8');
    const damaged = `${directory}/damaged.jsonl`;
    await writeFile(damaged, text.slice(0, text.lastIndexOf('\n', text.length - 2) + 1));
    const restored = await digestd(['restore', '--from', damaged, '--to', `lmdb:${directory}/from-damaged`]);
    assert.equal(restored.code, 1);
    assert.match(
      restored.stderr,
      /damaged\.jsonl, line \d+: the file ends without a trailer \(it is truncated\)\.\n$/,
    );
    const verified = await digestd(['verify', '--backup', damaged]);
    assert.equal(verified.code, 1);
    assert.match(verified.stderr, /the file ends without a trailer/);
  });

  it('backup and restore need their files and stores, naming each missing one', async () => {
    const backup = await digestd(['backup', '--store', `lmdb:${directory}/lmdb`]);
    assert.equal(backup.code, 2);
    assert.match(backup.stderr, /--to \(DIGESTD_BACKUP_TO\): required/);
    const restore = await digestd(['restore']);
    assert.equal(restore.code, 2);
    assert.match(restore.stderr, /--from \(DIGESTD_RESTORE_FROM\): required/);
    assert.match(restore.stderr, /--to \(DIGESTD_RESTORE_TO\): required/);
    const absent = await digestd([
      'backup',
      '--store',
      `lmdb:${directory}/absent`,
      '--to',
      `${directory}/x.jsonl`,
    ]);
    assert.equal(absent.code, 2);
    assert.match(absent.stderr, /--store: There is no LMDB store at/);
  });
});
