import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { InjectOptions } from 'fastify';
import { buildTestApp, useTestApp } from '../../helpers/app.js';
import { sha256Hex } from '../../harness/sha256.js';

const FOO_DIGEST = '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae';

const testApp = useTestApp(['--max-message-size', '1024']);

function post(payload: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const options: InjectOptions = { method: 'POST', url: '/messages', headers };
  if (typeof payload === 'string' || Buffer.isBuffer(payload)) options.payload = payload;
  else options.payload = JSON.stringify(payload);
  return testApp.app.inject(options);
}

function assertError(response: Awaited<ReturnType<typeof post>>, status: number, code: string) {
  assert.equal(response.statusCode, status, response.body);
  assert.equal(response.headers['content-type'], 'application/json');
  const body = response.json<{ err_msg: string; code: string }>();
  assert.equal(body.code, code);
  assert.equal(typeof body.err_msg, 'string');
  assert.ok(body.err_msg.length > 5, 'err_msg is a sentence');
  assert.deepEqual(Object.keys(body).sort(), ['code', 'err_msg']);
  assert.doesNotMatch(response.body, /at .*\.(ts|js):\d+/, 'no stack trace');
}

describe('POST /messages', () => {
  it('answers 201 with the SHA-256 digest of foo', async () => {
    const response = await post({ message: 'foo' });
    assert.equal(response.statusCode, 201);
    assert.equal(response.headers['content-type'], 'application/json');
    assert.deepEqual(response.json(), { digest: FOO_DIGEST });
  });

  it('answers 201 again with the same digest when the message is posted twice', async () => {
    const first = await post({ message: 'twice' });
    const second = await post({ message: 'twice' });
    assert.equal(first.statusCode, 201);
    assert.equal(second.statusCode, 201);
    assert.deepEqual(second.json(), first.json());
  });

  it('accepts the empty string and round-trips it', async () => {
    const response = await post({ message: '' });
    assert.equal(response.statusCode, 201);
    const { digest } = response.json<{ digest: string }>();
    assert.equal(digest, sha256Hex(''));
    const read = await testApp.app.inject({ method: 'GET', url: `/messages/${digest}` });
    assert.equal(read.statusCode, 200);
    assert.deepEqual(read.json(), { message: '' });
  });

  it('ignores extra fields and hashes only the message', async () => {
    const response = await post({ message: 'foo', digest: 'f'.repeat(64), other: [1, 2] });
    assert.equal(response.statusCode, 201);
    assert.deepEqual(response.json(), { digest: FOO_DIGEST });
  });

  it('accepts a charset parameter on the JSON content type', async () => {
    const response = await post(JSON.stringify({ message: 'foo' }), {
      'content-type': 'application/json; charset=utf-8',
    });
    assert.equal(response.statusCode, 201);
  });

  it('refuses a JSON charset other than UTF-8 with 415, as for text/plain', async () => {
    // "Ã©" in Latin-1 is the bytes of "é" in UTF-8: decoded as UTF-8 it would be stored as another message.
    const body = Buffer.from(JSON.stringify({ message: 'Ã©' }), 'latin1');
    for (const charset of ['latin1', 'ISO-8859-1', '"utf-16"']) {
      const response = await post(body, { 'content-type': `application/json; charset=${charset}` });
      assertError(response, 415, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(response.json<{ err_msg: string }>().err_msg, /charset/);
    }
    const batch = await testApp.app.inject({
      method: 'POST',
      url: '/messages/batch',
      headers: { 'content-type': 'application/json; charset=latin1' },
      payload: JSON.stringify({ messages: ['a'] }),
    });
    assertError(batch, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('refuses a Content-Encoding other than identity with 415, compressed or not', async () => {
    const json = JSON.stringify({ message: 'foo' });
    for (const [encoding, payload] of [
      ['gzip', gzipSync(json)],
      ['gzip', Buffer.from(json)],
      ['br', Buffer.from(json)],
      ['deflate, gzip', Buffer.from(json)],
    ] as const) {
      const response = await post(payload, {
        'content-type': 'application/json',
        'content-encoding': encoding,
      });
      assertError(response, 415, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(response.json<{ err_msg: string }>().err_msg, /Content-Encoding.*uncompressed/);
    }
    const text = await post('foo', { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
    assertError(text, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const identity = await post(json, { 'content-type': 'application/json', 'content-encoding': 'identity' });
    assert.equal(identity.statusCode, 201);
    assert.deepEqual(identity.json(), { digest: FOO_DIGEST });
  });

  it('hashes the UTF-8 bytes of non-ASCII messages', async () => {
    const message = 'héllo wörld 🎉 日本語';
    const response = await post({ message });
    assert.deepEqual(response.json(), { digest: sha256Hex(message) });
  });

  for (const [label, payload, code] of [
    ['malformed JSON', '{"message": "foo"', 'INVALID_JSON'],
    ['a JSON array', '["foo"]', 'INVALID_MESSAGE'],
    ['a JSON number', '42', 'INVALID_MESSAGE'],
    ['JSON null', 'null', 'INVALID_MESSAGE'],
    ['a JSON string', '"foo"', 'INVALID_MESSAGE'],
    ['an object without message', '{}', 'INVALID_MESSAGE'],
    ['a numeric message', '{"message": 42}', 'INVALID_MESSAGE'],
    ['a null message', '{"message": null}', 'INVALID_MESSAGE'],
    ['an object message', '{"message": {}}', 'INVALID_MESSAGE'],
    ['an array message', '{"message": ["foo"]}', 'INVALID_MESSAGE'],
    ['a boolean message', '{"message": true}', 'INVALID_MESSAGE'],
    ['message only on the prototype', '{"__proto__": {"message": "foo"}}', 'INVALID_MESSAGE'],
    ['an empty body', '', 'INVALID_JSON'],
  ] as const) {
    it(`rejects ${label} with 400 ${code}`, async () => {
      assertError(await post(payload), 400, code);
    });
  }

  it('rejects a lone surrogate with 400 and stores nothing', async () => {
    const before = await testApp.store.count();
    const response = await post('{"message": "\\ud800"}');
    assertError(response, 400, 'INVALID_MESSAGE');
    assert.equal(await testApp.store.count(), before, 'nothing was stored');
    // What the surrogate would become if it were encoded anyway.
    assert.equal(await testApp.store.has(Buffer.from(sha256Hex('\ufffd'), 'hex')), false);
  });

  it('rejects invalid UTF-8 bytes in the body with 400', async () => {
    const body = Buffer.concat([Buffer.from('{"message": "'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    assertError(await post(body), 400, 'INVALID_UTF8');
  });

  it('rejects malformed JSON with code INVALID_JSON', async () => {
    assertError(await post('{"message": '), 400, 'INVALID_JSON');
  });

  it('answers 413 for a message over the limit', async () => {
    assertError(await post({ message: 'x'.repeat(1025) }), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('counts the limit in UTF-8 bytes, not characters', async () => {
    // 342 three-byte characters are 1,026 bytes: over a 1,024-byte limit though only 342 characters.
    assertError(await post({ message: '€'.repeat(342) }), 413, 'PAYLOAD_TOO_LARGE');
    assert.equal((await post({ message: '€'.repeat(341) })).statusCode, 201);
  });

  it('accepts a message of exactly the limit', async () => {
    assert.equal((await post({ message: 'y'.repeat(1024) })).statusCode, 201);
  });

  it('answers 413 for a body far over the limit', async () => {
    assertError(await post(JSON.stringify({ message: 'z'.repeat(10_000) })), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('answers 415 naming JSON for another content type', async () => {
    const response = await post('foo', { 'content-type': 'application/x-www-form-urlencoded' });
    assertError(response, 415, 'UNSUPPORTED_MEDIA_TYPE');
    assert.match(response.json<{ err_msg: string }>().err_msg, /application\/json/);
  });

  it('treats __proto__ and constructor keys as plain data', async () => {
    const response = await post('{"message": "proto", "__proto__": {"polluted": true}, "constructor": 1}');
    assert.equal(response.statusCode, 201);
    assert.deepEqual(response.json(), { digest: sha256Hex('proto') });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('stores "__proto__" and "constructor" as ordinary messages', async () => {
    for (const message of ['__proto__', 'constructor', 'toString']) {
      const { digest } = (await post({ message })).json<{ digest: string }>();
      const read = await testApp.app.inject({ method: 'GET', url: `/messages/${digest}` });
      assert.deepEqual(read.json(), { message });
    }
  });
});

describe('GET /messages/:digest', () => {
  it('answers the original message', async () => {
    await post({ message: 'foo' });
    const response = await testApp.app.inject({ method: 'GET', url: `/messages/${FOO_DIGEST}` });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/json');
    assert.deepEqual(response.json(), { message: 'foo' });
  });

  it('matches hex digits case-insensitively', async () => {
    await post({ message: 'foo' });
    const response = await testApp.app.inject({
      method: 'GET',
      url: `/messages/${FOO_DIGEST.toUpperCase()}`,
    });
    assert.deepEqual(response.json(), { message: 'foo' });
  });

  it('answers 404 Message not found for an unknown digest', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: `/messages/${'0'.repeat(64)}` });
    assertError(response, 404, 'MESSAGE_NOT_FOUND');
    assert.equal(response.json<{ err_msg: string }>().err_msg, 'Message not found');
  });

  for (const malformed of [
    'iWillReturn404',
    'abc',
    'g'.repeat(64),
    'a'.repeat(63),
    'a'.repeat(65),
    '%zz',
    '..%2f',
  ]) {
    it(`answers 404 Message not found for the malformed digest ${malformed}`, async () => {
      const response = await testApp.app.inject({ method: 'GET', url: `/messages/${malformed}` });
      assertError(response, 404, 'MESSAGE_NOT_FOUND');
      assert.equal(response.json<{ err_msg: string }>().err_msg, 'Message not found');
    });
  }
});

describe('routing', () => {
  it('answers 404 JSON for an unknown route', async () => {
    assertError(await testApp.app.inject({ method: 'GET', url: '/nothing/here' }), 404, 'ROUTE_NOT_FOUND');
  });

  it('answers 405 with Allow for a wrong method on /messages', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH'] as const) {
      const response = await testApp.app.inject({ method, url: '/messages' });
      assertError(response, 405, 'METHOD_NOT_ALLOWED');
      assert.equal(response.headers.allow, 'POST');
    }
  });

  it('answers 405 with Allow for a wrong method on /messages/:digest', async () => {
    const response = await testApp.app.inject({ method: 'PUT', url: `/messages/${FOO_DIGEST}` });
    assertError(response, 405, 'METHOD_NOT_ALLOWED');
    assert.equal(response.headers.allow, 'GET, HEAD, DELETE');
  });
});

describe('health', () => {
  it('GET /healthz answers 200', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { status: 'ok' });
  });

  it('GET /readyz answers 200 while the store answers', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { status: 'ready', store: 'lmdb' });
  });

  it('GET /readyz answers 503 when the store does not answer', async () => {
    const broken = await buildTestApp();
    await broken.store.close();
    try {
      const response = await broken.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(response.statusCode, 503);
      assert.equal(response.json<{ code: string }>().code, 'STORE_UNAVAILABLE');
      assert.equal(response.headers['retry-after'], '1');
    } finally {
      await broken.app.close();
    }
  });
});
