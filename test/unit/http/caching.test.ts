import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildTestApp, type TestApp } from '../../helpers/app.js';

const FOO_DIGEST = '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae';
const UNKNOWN_DIGEST = '0'.repeat(64);
const IMMUTABLE = 'public, max-age=31536000, immutable';

let testApp: TestApp;
let app: FastifyInstance;
before(async () => {
  testApp = await buildTestApp();
  app = testApp.app;
  const stored = await app.inject({
    method: 'POST',
    url: '/messages',
    headers: { 'content-type': 'application/json' },
    payload: { message: 'foo' },
  });
  assert.equal(stored.statusCode, 201);
});
after(() => testApp.close());

const get = (url: string, headers: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url, headers });

describe('caching of GET /messages/:digest', () => {
  it('sends a strong ETag of the digest and an immutable Cache-Control', async () => {
    const response = await get(`/messages/${FOO_DIGEST}`);
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers.etag, `"${FOO_DIGEST}"`);
    assert.equal(response.headers['cache-control'], IMMUTABLE);
    assert.equal(response.headers.vary, 'Accept');
  });

  it('uses the lowercase digest in the ETag when the URL is uppercase', async () => {
    const response = await get(`/messages/${FOO_DIGEST.toUpperCase()}`);
    assert.equal(response.headers.etag, `"${FOO_DIGEST}"`);
  });

  for (const [label, header] of [
    ['the strong ETag', `"${FOO_DIGEST}"`],
    ['the weak ETag', `W/"${FOO_DIGEST}"`],
    ['*', '*'],
    ['a list containing the ETag', `"${'1'.repeat(64)}", W/"${FOO_DIGEST}" ,"x"`],
  ] as const) {
    it(`answers 304 with no body to If-None-Match with ${label}`, async () => {
      const response = await get(`/messages/${FOO_DIGEST}`, { 'if-none-match': header });
      assert.equal(response.statusCode, 304);
      assert.equal(response.body, '');
      assert.equal(response.headers.etag, `"${FOO_DIGEST}"`);
      assert.equal(response.headers['cache-control'], IMMUTABLE);
      assert.equal(response.headers['content-type'], undefined);
    });
  }

  it('answers 200 to If-None-Match with another ETag', async () => {
    const response = await get(`/messages/${FOO_DIGEST}`, { 'if-none-match': `"${'1'.repeat(64)}"` });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { message: 'foo' });
  });

  it('answers 404, not 304, to If-None-Match: * for an unknown digest', async () => {
    const response = await get(`/messages/${UNKNOWN_DIGEST}`, { 'if-none-match': '*' });
    assert.equal(response.statusCode, 404);
    assert.equal(response.headers['cache-control'], 'no-store');
  });

  it('answers 404 with Cache-Control: no-store and no ETag', async () => {
    for (const url of [`/messages/${UNKNOWN_DIGEST}`, '/messages/iWillReturn404']) {
      const response = await get(url);
      assert.equal(response.statusCode, 404);
      assert.equal(response.headers['cache-control'], 'no-store');
      assert.equal(response.headers.etag, undefined);
    }
  });
});

describe('HEAD /messages/:digest', () => {
  it('answers 200 with the Content-Length of the GET body and no body', async () => {
    const full = await get(`/messages/${FOO_DIGEST}`);
    const head = await app.inject({ method: 'HEAD', url: `/messages/${FOO_DIGEST}` });
    assert.equal(head.statusCode, 200);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(full.body)));
    assert.equal(head.headers.etag, `"${FOO_DIGEST}"`);
    assert.equal(head.headers['cache-control'], IMMUTABLE);
  });

  it('answers the Content-Length of the raw message with Accept: text/plain', async () => {
    const head = await app.inject({
      method: 'HEAD',
      url: `/messages/${FOO_DIGEST}`,
      headers: { accept: 'text/plain' },
    });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-length'], '3');
    assert.equal(head.headers['content-type'], 'text/plain; charset=utf-8');
  });

  it('answers 404 with no body for an unknown digest', async () => {
    const head = await app.inject({ method: 'HEAD', url: `/messages/${UNKNOWN_DIGEST}` });
    assert.equal(head.statusCode, 404);
    assert.equal(head.body, '');
  });
});

describe('POST /messages Location', () => {
  it('names the stored message in Location on 201', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/messages',
      headers: { 'content-type': 'application/json' },
      payload: { message: 'foo' },
    });
    assert.equal(response.statusCode, 201);
    assert.equal(response.headers.location, `/messages/${FOO_DIGEST}`);
    const followed = await get(response.headers.location);
    assert.deepEqual(followed.json(), { message: 'foo' });
  });
});
