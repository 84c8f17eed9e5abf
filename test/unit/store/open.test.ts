import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidConfig } from '../../../src/errors.js';
import { openStore } from '../../../src/store/open.js';
import { parseStoreUrl } from '../../../src/store/url.js';
import { loadConfig } from '../../../src/config/load.js';

describe('store URLs', () => {
  it('parses each kind of store URL', () => {
    assert.deepEqual(parseStoreUrl('lmdb:/var/lib/digestd'), { kind: 'lmdb', path: '/var/lib/digestd' });
    assert.deepEqual(parseStoreUrl('postgres://digestd@db:5432/app?table=msgs'), {
      kind: 'postgres',
      connectionString: 'postgres://digestd@db:5432/app',
      table: 'msgs',
    });
    assert.deepEqual(parseStoreUrl('redis://cache:6379/2?prefix=d:'), {
      kind: 'redis',
      url: 'redis://cache:6379/2',
      keyPrefix: 'd:',
    });
    assert.deepEqual(parseStoreUrl('redis-cluster://a:7000,b:7001,[::1]:7002'), {
      kind: 'redis-cluster',
      nodes: [
        { host: 'a', port: 7000 },
        { host: 'b', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      keyPrefix: undefined,
    });
  });

  it('refuses unknown schemes and malformed seeds with InvalidConfig', () => {
    for (const url of ['mysql://x', 'redis-cluster://a', 'redis-cluster://', 'lmdb:', 'nonsense']) {
      assert.throws(() => parseStoreUrl(url), InvalidConfig, url);
    }
  });

  it('refuses a table or key prefix the store would refuse, and names --store when read as a setting', () => {
    for (const url of [
      'postgres://db/app?table=x;%20DROP%20TABLE%20y',
      'postgres://db/app?table=a.b.c',
      'redis://cache:6379?prefix=a%20b',
      'redis-cluster://a:7000?prefix=' + 'p'.repeat(33),
    ]) {
      assert.throws(() => parseStoreUrl(url), InvalidConfig, url);
      assert.throws(
        () => loadConfig(['--store', url], {}),
        (error: InvalidConfig) => error.problems.length === 1 && error.problems[0]!.startsWith('--store: '),
        url,
      );
    }
  });

  it('defaults --store to lmdb in --data-dir, and validates it with the other settings', () => {
    assert.equal(loadConfig(['--data-dir', '/srv/d'], {}).store.url, 'lmdb:/srv/d');
    assert.equal(loadConfig([], { DIGESTD_STORE: 'redis://r:1' }).store.url, 'redis://r:1');
    assert.throws(
      () => loadConfig(['--store', 'mysql://x', '--cache-size', 'lots'], {}),
      (error: InvalidConfig) => error.problems.length === 2 && /--store/.test(error.message),
    );
  });

  it('loads a backend library only when that backend is opened', async () => {
    const store = await openStore({
      url: 'redis://127.0.0.1:1',
      timeoutMs: 2000,
      cacheBytes: 0,
      redisWaitReplicas: undefined,
    });
    assert.equal(store.kind, 'redis');
    await store.close();
    const loaded = Object.keys(
      await import('node:module').then((m) => m.createRequire(import.meta.url).cache),
    );
    // pg is never needed for a Redis store.
    assert.ok(!loaded.some((file) => /node_modules[\\/]pg[\\/]/.test(file)), 'pg is not loaded');
  });
});
