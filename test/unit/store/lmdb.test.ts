import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { digestOf } from '../../../src/digest.js';
import { createLmdbStore } from '../../../src/store/lmdb.js';
import { describeStoreConformance } from '../../helpers/store-conformance.js';
import { STORE_TIMEOUT_MS } from '../../helpers/store-options.js';

const directory = await mkdtemp(path.join(tmpdir(), 'digestd-lmdb-'));
after(() => rm(directory, { recursive: true, force: true }));

let restores = 0;
describeStoreConformance('lmdb', {
  open: () => createLmdbStore({ path: directory, timeoutMs: STORE_TIMEOUT_MS }),
  openEmpty: () =>
    createLmdbStore({
      path: path.join(directory, `restored-${(restores += 1)}`),
      timeoutMs: STORE_TIMEOUT_MS,
    }),
  snapshotEntries: true,
});

it('opens a data directory whose name contains a dot', async () => {
  const dotted = path.join(directory, 'data.v1');
  const store = await createLmdbStore({ path: dotted, timeoutMs: STORE_TIMEOUT_MS });
  try {
    await store.put(digestOf('dotted'), 'dotted');
    assert.equal(await store.get(digestOf('dotted')), 'dotted');
    assert.ok((await stat(dotted)).isDirectory());
  } finally {
    await store.close();
  }
});
