import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { digestOf, formatDigest } from '../../../src/digest.js';
import { tokenIdOf } from '../../../src/http/plugins/bearer-tokens.js';
import { createLogger } from '../../../src/log/logger.js';
import { sample } from '../../helpers/metrics-text.js';
import { buildTestApp, type TestApp } from '../../helpers/app.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const WRITER = 'write-token-for-tests-0123456789';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('takedown over HTTP', () => {
  let built: TestApp;
  const lines: Record<string, unknown>[] = [];
  before(async () => {
    const logger = createLogger({
      level: 'info',
      destination: {
        write: (text: string) => {
          for (const line of text.split('\n').filter(Boolean))
            lines.push(JSON.parse(line) as Record<string, unknown>);
        },
      },
    });
    built = await buildTestApp(['--admin-token', ADMIN, '--write-token', WRITER], { logger });
  });
  after(() => built.close());

  const post = (message: string) =>
    built.app.inject({ method: 'POST', url: '/messages', headers: bearer(WRITER), payload: { message } });
  const remove = (hex: string, headers: Record<string, string> = bearer(ADMIN)) =>
    built.app.inject({ method: 'DELETE', url: `/messages/${hex}`, headers });

  it('removes with an admin token, logs who by token id (never the token) and counts it', async () => {
    const message = `taken down ${Math.random()}`;
    assert.equal((await post(message)).statusCode, 201);
    const hex = formatDigest(digestOf(message));
    const metricsBefore = (await built.app.inject({ method: 'GET', url: '/metrics' })).body;
    const from = lines.length;
    const answer = await remove(hex.toUpperCase());
    assert.equal(answer.statusCode, 200, answer.body);
    assert.deepEqual(answer.json(), { digest: hex, outcome: 'removed' });
    assert.equal(answer.headers['cache-control'], 'no-store');
    const logged = lines.slice(from).find((line) => line.msg === 'message removed');
    assert.ok(logged, 'the removal is logged');
    assert.equal(logged.digest, hex);
    assert.equal(logged.tokenId, tokenIdOf(ADMIN));
    assert.equal(logged.outcome, 'removed');
    assert.ok(
      !lines.slice(from).some((line) => JSON.stringify(line).includes(ADMIN)),
      'the token is never logged',
    );
    const metricsAfter = (await built.app.inject({ method: 'GET', url: '/metrics' })).body;
    const removedCount = (text: string) =>
      sample(text, 'digestd_messages_removed_total{outcome="removed"}') ?? 0;
    assert.equal(removedCount(metricsAfter), removedCount(metricsBefore) + 1);

    assert.deepEqual((await remove(hex)).json(), { digest: hex, outcome: 'already_removed' });
    const never = formatDigest(digestOf(`never stored ${Math.random()}`));
    assert.deepEqual((await remove(never)).json(), { digest: never, outcome: 'not_stored' });
  });

  it('answers 410 MESSAGE_REMOVED to GET, HEAD, text, conditional GET, lookup, POST and batch', async () => {
    const message = `gone ${Math.random()}`;
    await post(message);
    const hex = formatDigest(digestOf(message));
    await remove(hex);
    const requests = [
      { method: 'GET' as const, url: `/messages/${hex}` },
      { method: 'GET' as const, url: `/messages/${hex}`, headers: { accept: 'text/plain' } },
      { method: 'GET' as const, url: `/messages/${hex}`, headers: { 'if-none-match': `"${hex}"` } },
      { method: 'HEAD' as const, url: `/messages/${hex}` },
      { method: 'POST' as const, url: '/messages/lookup', payload: { digests: [hex] } },
      { method: 'POST' as const, url: '/messages', headers: bearer(WRITER), payload: { message } },
      {
        method: 'POST' as const,
        url: '/messages',
        headers: { ...bearer(WRITER), 'content-type': 'text/plain; charset=utf-8' },
        payload: message,
      },
      {
        method: 'POST' as const,
        url: '/messages/batch',
        headers: bearer(WRITER),
        payload: { messages: ['beside it', message] },
      },
    ];
    for (const request of requests) {
      const answer = await built.app.inject(request);
      assert.equal(answer.statusCode, 410, `${request.method} ${request.url}: ${answer.body}`);
      assert.equal(answer.headers['cache-control'], 'no-store');
      if (request.method !== 'HEAD') assert.equal(answer.json<{ code: string }>().code, 'MESSAGE_REMOVED');
    }
    const lookup = await built.app.inject({
      method: 'POST',
      url: '/messages/lookup',
      payload: { digests: [formatDigest(digestOf('beside it')), hex] },
    });
    assert.match(lookup.json<{ err_msg: string }>().err_msg, new RegExp(hex));
    const batch = await built.app.inject({
      method: 'POST',
      url: '/messages/batch',
      headers: bearer(WRITER),
      payload: { messages: ['stored beside it', message, 'also beside it'] },
    });
    assert.equal(batch.statusCode, 410);
    assert.match(
      batch.json<{ err_msg: string }>().err_msg,
      new RegExp(`^messages\\[1\\] \\(${hex}\\) was removed`),
      'the batch names the removed item, so that the client can post the others again',
    );
  });

  it('refuses a removal without a token (401), with a wrong one (401) and with a write token (403)', async () => {
    const hex = formatDigest(digestOf('kept'));
    await post('kept');
    const missing = await remove(hex, {});
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.json<{ code: string }>().code, 'UNAUTHORIZED');
    assert.equal(missing.headers['www-authenticate'], 'Bearer realm="digestd"');
    const wrong = await remove(hex, bearer('not-a-token'));
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.headers['www-authenticate'], 'Bearer realm="digestd", error="invalid_token"');
    const writer = await remove(hex, bearer(WRITER));
    assert.equal(writer.statusCode, 403);
    assert.equal(writer.json<{ code: string }>().code, 'FORBIDDEN');
    assert.equal(writer.headers['www-authenticate'], 'Bearer realm="digestd", error="insufficient_scope"');
    // An admin token is not a write token either.
    const adminWrites = await built.app.inject({
      method: 'POST',
      url: '/messages',
      headers: bearer(ADMIN),
      payload: { message: 'x' },
    });
    assert.equal(adminWrites.statusCode, 401);
    assert.equal((await built.app.inject({ method: 'GET', url: `/messages/${hex}` })).statusCode, 200);
  });

  it('answers a malformed digest 400 INVALID_DIGEST', async () => {
    const answer = await remove('abc');
    assert.equal(answer.statusCode, 400);
    assert.equal(answer.json<{ code: string }>().code, 'INVALID_DIGEST');
  });
});

describe('takedown over HTTP without an admin token', () => {
  let built: TestApp;
  before(async () => {
    built = await buildTestApp([]);
  });
  after(() => built.close());

  it('says that removal over HTTP is off, and removes nothing', async () => {
    const posted = await built.app.inject({
      method: 'POST',
      url: '/messages',
      payload: { message: 'stays' },
    });
    const { digest } = posted.json<{ digest: string }>();
    for (const headers of [{}, bearer('anything')]) {
      const answer = await built.app.inject({ method: 'DELETE', url: `/messages/${digest}`, headers });
      assert.equal(answer.statusCode, 403);
      const body = answer.json<{ code: string; err_msg: string }>();
      assert.equal(body.code, 'REMOVAL_DISABLED');
      assert.match(body.err_msg, /Removal over HTTP is off.*--admin-token/);
    }
    assert.equal((await built.app.inject({ method: 'GET', url: `/messages/${digest}` })).statusCode, 200);
  });
});
