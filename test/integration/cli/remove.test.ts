import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { digestOf, formatDigest } from '../../../src/digest.js';
import { MessageRemoved } from '../../../src/errors.js';
import { createLmdbStore } from '../../../src/store/lmdb.js';
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS } from '../../../src/store/removal-feed.js';
import { REMOVED } from '../../../src/store/types.js';
import { sample } from '../../helpers/metrics-text.js';
import { runDigestd } from '../../harness/digestd.js';
import { postMessage, request, startServer, temporaryDirectory } from '../../helpers/server.js';
import {
  dropPostgresStore,
  postgresAvailable,
  serviceSkip,
  TEST_POSTGRES_URL,
} from '../../helpers/services.js';
import { STORE_TIMEOUT_MS } from '../../helpers/store-options.js';

const digestd = runDigestd;

const postgresSkip = await serviceSkip(
  'PostgreSQL',
  () => postgresAvailable(),
  'bash .ci/services starts it',
);
const directory = await temporaryDirectory('digestd-remove-');
const table = `digestd_remove_${process.pid}_${randomBytes(4).toString('hex')}`;
const postgresUrl = `${TEST_POSTGRES_URL}?table=${table}`;
after(async () => {
  await rm(directory, { recursive: true, force: true });
  if (postgresSkip) return;
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  await dropPostgresStore(client, table);
  await client.end();
});

const hex = (message: string) => formatDigest(digestOf(message));

describe('digestd remove', () => {
  const lmdb = `lmdb:${directory}/offline`;

  it('removes digests given as arguments and read from a file, offline, with a line of counts', async () => {
    const store = await createLmdbStore({ path: `${directory}/offline`, timeoutMs: STORE_TIMEOUT_MS });
    await store.putMany(
      ['one', 'two', 'three', 'kept'].map((message) => [digestOf(message), message] as const),
    );
    await store.close();
    const list = `${directory}/takedown.txt`;
    await writeFile(
      list,
      `# abuse report 17\n${hex('two')}\n\n  ${hex('three').toUpperCase()}  \n${hex('never stored')}\n# end\n`,
    );
    const result = await digestd(['remove', '--store', lmdb, hex('one'), '--from', list, hex('two')]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^remove: ${hex('one')} removed$`, 'm'));
    assert.match(result.stdout, new RegExp(`^remove: ${hex('never stored')} not stored$`, 'm'));
    assert.match(result.stdout, /\nremove: removed 3, not stored 1, already removed 0\n$/);

    const again = await digestd(['remove', '--store', lmdb, hex('one')]);
    assert.match(again.stdout, /remove: removed 0, not stored 0, already removed 1\n$/);

    const reopened = await createLmdbStore({ path: `${directory}/offline`, timeoutMs: STORE_TIMEOUT_MS });
    try {
      for (const message of ['one', 'two', 'three', 'never stored']) {
        assert.equal(await reopened.get(digestOf(message)), REMOVED, message);
      }
      assert.equal(await reopened.get(digestOf('kept')), 'kept');
      await assert.rejects(reopened.put(digestOf('two'), 'two'), MessageRemoved);
    } finally {
      await reopened.close();
    }
  });

  it('checks every digest first: a bad line stops it with exit 2, naming the line, and removes nothing', async () => {
    const store = await createLmdbStore({ path: `${directory}/checked`, timeoutMs: STORE_TIMEOUT_MS });
    await store.put(digestOf('safe'), 'safe');
    await store.close();
    const list = `${directory}/bad.txt`;
    await writeFile(list, `${hex('safe')}\nnot-a-digest\n`);
    const result = await digestd(['remove', '--store', `lmdb:${directory}/checked`, '--from', list]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /bad\.txt, line 2: "not-a-digest" is not a digest/);
    assert.match(result.stderr, /nothing was removed/);
    const reopened = await createLmdbStore({ path: `${directory}/checked`, timeoutMs: STORE_TIMEOUT_MS });
    try {
      assert.equal(await reopened.get(digestOf('safe')), 'safe');
    } finally {
      await reopened.close();
    }
    const nothing = await digestd(['remove', '--store', `lmdb:${directory}/checked`]);
    assert.equal(nothing.code, 2);
    assert.match(nothing.stderr, /name the digests to remove as arguments, or give --from/);
  });

  it('removes from an LMDB store while its server runs, which then answers 410', async () => {
    const dataDir = `${directory}/online`;
    const server = await startServer({ dataDir, args: ['--no-tls', '--workers', '2'] });
    try {
      const message = `online ${Math.random()}`;
      assert.equal((await postMessage(server, message)).status, 201);
      const result = await digestd(['remove', '--data-dir', dataDir, hex(message)]);
      assert.equal(result.code, 0, result.stderr);
      for (let attempt = 0; attempt < 4; attempt += 1) {
        const read = await request(`${server.url}/messages/${hex(message)}`);
        assert.equal(read.status, 410, read.body);
      }
      assert.equal((await postMessage(server, message)).status, 410);
    } finally {
      await server.stop();
    }
  });

  it(
    'removes from PostgreSQL while a server with a cache runs: its cached copy goes within the bound',
    { skip: postgresSkip ?? false },
    async () => {
      const server = await startServer({ args: ['--no-tls', '--workers', '1', '--store', postgresUrl] });
      try {
        const message = `cached, removed by the CLI ${Math.random()}`;
        assert.equal((await postMessage(server, message)).status, 201);
        const hits = async () =>
          sample((await request(`${server.url}/metrics`)).body, 'digestd_cache_hits_total') ?? 0;
        // Read until the server answers it from its cache (its channel is live shortly after start).
        for (let attempt = 0; ; attempt += 1) {
          const before = await hits();
          assert.equal((await request(`${server.url}/messages/${hex(message)}`)).status, 200);
          if ((await hits()) > before) break;
          assert.ok(attempt < 200, 'the server caches the message');
          await sleep(50);
        }
        const result = await digestd(['remove', '--store', postgresUrl, hex(message)]);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /removed 1, not stored 0, already removed 0/);
        // The bound holds when no request sent after it is still answered from the cache (a
        // request's own latency on a busy machine does not count against the server).
        const started = performance.now();
        let status = 200;
        let lastServedSentAt = 0;
        while (
          status === 200 &&
          performance.now() - started < 4 * (HEARTBEAT_INTERVAL_MS + HEARTBEAT_TIMEOUT_MS)
        ) {
          const sentAt = performance.now() - started;
          status = (await request(`${server.url}/messages/${hex(message)}`)).status;
          if (status === 200) lastServedSentAt = sentAt;
        }
        assert.equal(status, 410);
        assert.ok(lastServedSentAt <= HEARTBEAT_INTERVAL_MS + HEARTBEAT_TIMEOUT_MS, `${lastServedSentAt} ms`);
      } finally {
        await server.stop();
      }
    },
  );

  it('migrate carries the denylist: removed messages are not copied, and the target refuses them', async () => {
    const source = await createLmdbStore({ path: `${directory}/source`, timeoutMs: STORE_TIMEOUT_MS });
    await source.putMany(['stays', 'goes'].map((message) => [digestOf(message), message] as const));
    await source.remove(digestOf('goes'));
    await source.remove(digestOf('listed only'));
    await source.close();
    const result = await digestd([
      'migrate',
      '--from',
      `lmdb:${directory}/source`,
      '--to',
      `lmdb:${directory}/target`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /copied 1, already present 0, mismatched 0, removed digests listed 2, refused as removed 0/,
    );
    const target = await createLmdbStore({ path: `${directory}/target`, timeoutMs: STORE_TIMEOUT_MS });
    try {
      assert.equal(await target.get(digestOf('stays')), 'stays');
      assert.equal(await target.get(digestOf('goes')), REMOVED);
      assert.equal(await target.get(digestOf('listed only')), REMOVED);
      await assert.rejects(target.put(digestOf('goes'), 'goes'), MessageRemoved);
    } finally {
      await target.close();
    }
  });

  it('--help shows its usage and the settings of the schema', async () => {
    const help = await digestd(['remove', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: digestd remove \[--store <url>\] \[--from <file>\] <digest>\.\.\./);
    for (const flag of ['--store', '--from', '--data-dir', '--store-timeout'])
      assert.ok(help.stdout.includes(flag), flag);
  });
});
