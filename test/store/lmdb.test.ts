import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { LmdbStore } from '../../src/store/lmdb.js';
import { describeStoreConformance } from './conformance.js';

const directory = await mkdtemp(path.join(tmpdir(), 'digestd-lmdb-'));
after(() => rm(directory, { recursive: true, force: true }));

describeStoreConformance('lmdb', { open: () => LmdbStore.open({ path: directory }) });
