import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Digest } from '../../../src/digest.js';
import type { MessageStore } from '../../../src/store/types.js';
import { buildTestApp, type TestApp } from '../../helpers/app.js';
import { sha256Hex } from '../../harness/sha256.js';

let testApp: TestApp;
let app: FastifyInstance;
/** How many times putMany and put were called on the store. */
const calls = { put: 0, putMany: 0 };
before(async () => {
  testApp = await buildTestApp(['--max-message-size', '1024', '--batch-max', '5']);
  app = testApp.app;
  // Count calls on the real store to see that a batch is one putMany (one durable commit).
  const store = testApp.store as MessageStore & Record<string, unknown>;
  const put = store.put.bind(store);
  const putMany = store.putMany.bind(store);
  store.put = (digest: Digest, message: string) => {
    calls.put++;
    return put(digest, message);
  };
  store.putMany = (entries: readonly (readonly [Digest, string])[]) => {
    calls.putMany++;
    return putMany(entries);
  };
});
after(() => testApp.close());

function postJson(url: string, payload: unknown) {
  return app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });
}

function assertError(response: Awaited<ReturnType<typeof postJson>>, status: number, code: string) {
  assert.equal(response.statusCode, status, response.body);
  assert.deepEqual(Object.keys(response.json<object>()).sort(), ['code', 'err_msg']);
  assert.equal(response.json<{ code: string }>().code, code);
  return response.json<{ err_msg: string }>().err_msg;
}

describe('POST /messages/batch', () => {
  it('answers 201 with the digests in order, in one putMany', async () => {
    const messages = ['one', 'two', '', 'one', 'ünïcødé'];
    const before = { ...calls };
    const response = await postJson('/messages/batch', { messages });
    assert.equal(response.statusCode, 201);
    assert.deepEqual(response.json(), { digests: messages.map(sha256Hex) });
    assert.equal(calls.putMany - before.putMany, 1);
    assert.equal(calls.put - before.put, 0);
    for (const message of messages) {
      const read = await app.inject({ method: 'GET', url: `/messages/${sha256Hex(message)}` });
      assert.deepEqual(read.json(), { message });
    }
  });

  it('accepts an empty batch', async () => {
    const response = await postJson('/messages/batch', { messages: [] });
    assert.equal(response.statusCode, 201);
    assert.deepEqual(response.json(), { digests: [] });
  });

  it('rejects the whole batch with 400 naming the bad index, storing nothing', async () => {
    for (const [bad, pattern] of [
      [42, /must be a string, not number/],
      [null, /not null/],
      [{ message: 'x' }, /not object/],
      ['\ud800', /lone surrogate/],
    ] as const) {
      const response = await postJson('/messages/batch', { messages: ['fine-before', bad, 'fine-after'] });
      const text = assertError(response, 400, 'INVALID_MESSAGE');
      assert.match(text, /messages\[1\]/);
      assert.match(text, pattern);
    }
    const read = await app.inject({ method: 'GET', url: `/messages/${sha256Hex('fine-before')}` });
    assert.equal(read.statusCode, 404);
  });

  it('answers 413 naming the index of a message over the limit', async () => {
    const text = assertError(
      await postJson('/messages/batch', { messages: ['a', 'b', 'x'.repeat(1025)] }),
      413,
      'PAYLOAD_TOO_LARGE',
    );
    assert.match(text, /messages\[2\]/);
  });

  it('answers 413 BATCH_TOO_LARGE over --batch-max', async () => {
    const text = assertError(
      await postJson('/messages/batch', { messages: ['1', '2', '3', '4', '5', '6'] }),
      413,
      'BATCH_TOO_LARGE',
    );
    assert.match(text, /6 items; at most 5/);
    assert.equal(
      (await postJson('/messages/batch', { messages: ['1', '2', '3', '4', '5'] })).statusCode,
      201,
    );
  });

  it('answers 413 when the body is over the body limit', async () => {
    // Each message is within the limit; together they pass the body limit (six times it, plus 1 KiB).
    const messages = Array.from({ length: 8 }, (_, index) => `${index}`.padEnd(1000, 'x'));
    assertError(await postJson('/messages/batch', { messages }), 413, 'PAYLOAD_TOO_LARGE');
  });

  for (const [label, payload] of [
    ['a JSON array', '["a"]'],
    ['an object without messages', '{"message": "a"}'],
    ['messages that is not an array', '{"messages": "a"}'],
    ['messages only on the prototype', '{"__proto__": {"messages": ["a"]}}'],
    ['malformed JSON', '{"messages": ['],
  ] as const) {
    it(`rejects ${label} with 400`, async () => {
      const response = await postJson('/messages/batch', payload);
      assert.equal(response.statusCode, 400, response.body);
    });
  }

  it('answers 415 to a text/plain body', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/messages/batch',
      headers: { 'content-type': 'text/plain' },
      payload: 'a',
    });
    assertError(response, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('POST /messages/lookup', () => {
  before(async () => {
    assert.equal((await postJson('/messages/batch', { messages: ['alpha', 'beta'] })).statusCode, 201);
  });

  it('answers each digest with its message or null', async () => {
    const missing = '0'.repeat(64);
    const response = await postJson('/messages/lookup', {
      digests: [sha256Hex('alpha'), missing, sha256Hex('beta').toUpperCase()],
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/json');
    assert.deepEqual(response.json(), {
      messages: { [sha256Hex('alpha')]: 'alpha', [missing]: null, [sha256Hex('beta')]: 'beta' },
    });
  });

  it('stores nothing and answers an empty object for no digests', async () => {
    assert.deepEqual((await postJson('/messages/lookup', { digests: [] })).json(), { messages: {} });
  });

  it('serves messages named like Object.prototype members as plain data', async () => {
    assert.equal(
      (await postJson('/messages/batch', { messages: ['__proto__', 'constructor'] })).statusCode,
      201,
    );
    const response = await postJson('/messages/lookup', {
      digests: [sha256Hex('__proto__'), sha256Hex('constructor')],
    });
    assert.deepEqual(JSON.parse(response.body), {
      messages: { [sha256Hex('__proto__')]: '__proto__', [sha256Hex('constructor')]: 'constructor' },
    });
  });

  it('rejects a malformed digest with 400 INVALID_DIGEST naming its index', async () => {
    for (const bad of ['__proto__', 'abc', 42, null, 'g'.repeat(64)]) {
      const text = assertError(
        await postJson('/messages/lookup', { digests: [sha256Hex('alpha'), bad] }),
        400,
        'INVALID_DIGEST',
      );
      assert.match(text, /digests\[1\]/);
    }
  });

  it('answers 413 BATCH_TOO_LARGE over --batch-max', async () => {
    assertError(
      await postJson('/messages/lookup', { digests: Array(6).fill(sha256Hex('a')) }),
      413,
      'BATCH_TOO_LARGE',
    );
  });

  it('rejects a body without digests with 400', async () => {
    assertError(await postJson('/messages/lookup', { messages: [] }), 400, 'BAD_REQUEST');
  });
});

describe('routing of /messages/batch and /messages/lookup', () => {
  it('keeps GET /messages/:digest working next to the static routes', async () => {
    const response = await app.inject({ method: 'GET', url: `/messages/${sha256Hex('alpha')}` });
    assert.deepEqual(response.json(), { message: 'alpha' });
  });

  for (const url of ['/messages/batch', '/messages/lookup']) {
    it(`answers 405 Allow: POST for other methods on ${url}`, async () => {
      for (const method of ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH'] as const) {
        const response = await app.inject({ method, url });
        assert.equal(response.statusCode, 405, `${method} ${url}`);
        assert.equal(response.headers.allow, 'POST');
      }
    });
  }

  it('still answers 405 Allow: GET, HEAD, DELETE for POST /messages/<digest>', async () => {
    const response = await app.inject({ method: 'POST', url: `/messages/${sha256Hex('alpha')}` });
    assert.equal(response.statusCode, 405);
    assert.equal(response.headers.allow, 'GET, HEAD, DELETE');
  });
});
