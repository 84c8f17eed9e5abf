import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { open as openLmdb, type RootDatabase } from 'lmdb';
import type { FastifyInstance } from 'fastify';
import { createLogger } from '../../../src/log/logger.js';
import type { MessageStore } from '../../../src/store/types.js';
import { sha256Hex } from '../../harness/sha256.js';
import { buildTestApp, type TestApp } from '../../helpers/app.js';

let testApp: TestApp;
let store: MessageStore;
let app: FastifyInstance;
/** A second handle on the same LMDB environment, writing behind the store's back. */
let raw: RootDatabase<string, Buffer>;
const logLines: Record<string, unknown>[] = [];

before(async () => {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        logLines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  testApp = await buildTestApp(['--max-message-size', '1024'], {
    logger: createLogger({ level: 'info', destination }),
  });
  ({ app, store } = testApp);
  raw = openLmdb<string, Buffer>({
    path: testApp.directory,
    encoding: 'string',
    keyEncoding: 'binary',
    compression: false,
  });
});

after(async () => {
  await raw.close();
  await testApp.close();
});

async function corruptCount(): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const line = text.split('\n').find((entry) => entry.startsWith('digestd_corrupt_messages_total '));
  return Number(line?.split(' ')[1]);
}

async function storeAndTamper(message: string, tampered: string): Promise<string> {
  const response = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: { 'content-type': 'application/json' },
    payload: { message },
  });
  assert.equal(response.statusCode, 201);
  const digest = sha256Hex(message);
  await raw.put(Buffer.from(digest, 'hex'), tampered);
  assert.equal(await store.get(Buffer.from(digest, 'hex')), tampered, 'the entry is corrupt in LMDB');
  return digest;
}

describe('integrity of served messages', () => {
  it('answers 500 CORRUPT for an entry changed in LMDB, logs and counts it', async () => {
    const digest = await storeAndTamper('the original', 'the tampered');
    const countBefore = await corruptCount();
    const linesBefore = logLines.length;
    const response = await app.inject({ method: 'GET', url: `/messages/${digest}` });
    assert.equal(response.statusCode, 500);
    assert.deepEqual(response.json(), {
      err_msg: 'The stored message is corrupt and cannot be served.',
      code: 'CORRUPT',
    });
    assert.doesNotMatch(response.body, /tampered/);
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.equal(response.headers.etag, undefined);
    assert.equal((await corruptCount()) - countBefore, 1);
    // Only this request's lines: the test reads what it caused, whatever ran before it.
    const logged = logLines.slice(linesBefore).find((line) => String(line.msg).startsWith('corruption'));
    assert.ok(logged, 'a corruption line is logged');
    assert.equal(logged.level, 'error');
    assert.equal(logged.digest, digest);
    assert.equal(logged.actualDigest, sha256Hex('the tampered'));
    assert.equal(logged.store, 'lmdb');
  });

  it('refuses the raw text and the lookup of a corrupt entry too', async () => {
    const digest = await storeAndTamper('another original', 'another tampered');
    const text = await app.inject({
      method: 'GET',
      url: `/messages/${digest}`,
      headers: { accept: 'text/plain' },
    });
    assert.equal(text.statusCode, 500);
    assert.equal(text.json<{ code: string }>().code, 'CORRUPT');
    const lookup = await app.inject({
      method: 'POST',
      url: '/messages/lookup',
      headers: { 'content-type': 'application/json' },
      payload: { digests: [digest] },
    });
    assert.equal(lookup.statusCode, 500);
    assert.equal(lookup.json<{ code: string }>().code, 'CORRUPT');
  });

  it('rewrites a corrupt entry when its message is stored again', async () => {
    const digest = await storeAndTamper('stored twice', 'tampered once');
    const again = await app.inject({
      method: 'POST',
      url: '/messages',
      headers: { 'content-type': 'application/json' },
      payload: { message: 'stored twice' },
    });
    assert.equal(again.statusCode, 201);
    assert.equal(await store.get(Buffer.from(digest, 'hex')), 'stored twice');
    const read = await app.inject({ method: 'GET', url: `/messages/${digest}` });
    assert.deepEqual(read.json(), { message: 'stored twice' });
  });

  it('serves an intact entry next to a corrupt one', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/messages',
      headers: { 'content-type': 'application/json' },
      payload: { message: 'intact' },
    });
    const { digest } = response.json<{ digest: string }>();
    const read = await app.inject({ method: 'GET', url: `/messages/${digest}` });
    assert.deepEqual(read.json(), { message: 'intact' });
  });
});
