import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildTestApp, type TestApp } from '../../helpers/app.js';
import { sha256Hex } from '../../harness/sha256.js';
import { createLogger } from '../../../src/log/logger.js';

const json = { 'content-type': 'application/json' };

describe('security headers', () => {
  let testApp: TestApp;
  before(async () => {
    testApp = await buildTestApp();
  });
  after(() => testApp.close());

  it('sends X-Content-Type-Options: nosniff on answers and errors, and no HSTS without TLS', async () => {
    for (const options of [
      { method: 'GET', url: '/healthz' },
      { method: 'GET', url: `/messages/${'0'.repeat(64)}` },
      { method: 'GET', url: '/messages/%zz' },
      { method: 'POST', url: '/messages', headers: { 'content-type': 'text/html' }, payload: 'x' },
      { method: 'GET', url: '/' },
    ] as InjectOptions[]) {
      const response = await testApp.app.inject(options);
      assert.equal(response.headers['x-content-type-options'], 'nosniff', options.url as string);
      assert.equal(response.headers['strict-transport-security'], undefined);
    }
  });
});

describe('write tokens', () => {
  let testApp: TestApp;
  let app: FastifyInstance;
  before(async () => {
    testApp = await buildTestApp([
      '--write-token',
      'first-token-0123456789',
      '--write-token',
      'second-token-abcdef',
    ]);
    app = testApp.app;
  });
  after(() => testApp.close());

  const post = (message: string, authorization?: string, url = '/messages') =>
    app.inject({
      method: 'POST',
      url,
      headers: authorization === undefined ? json : { ...json, authorization },
      payload: url === '/messages' ? { message } : { messages: [message] },
    });

  it('answers 401 with WWW-Authenticate to a write without a token, storing nothing', async () => {
    const response = await post('no token');
    assert.equal(response.statusCode, 401);
    assert.equal(response.headers['www-authenticate'], 'Bearer realm="digestd"');
    assert.equal(response.json<{ code: string }>().code, 'UNAUTHORIZED');
    const read = await app.inject({ method: 'GET', url: `/messages/${sha256Hex('no token')}` });
    assert.equal(read.statusCode, 404);
  });

  for (const [label, authorization] of [
    ['a wrong token', 'Bearer wrong-token'],
    ['a prefix of a valid token', 'Bearer first-token'],
    ['a valid token with a suffix', 'Bearer first-token-0123456789x'],
    ['another scheme', 'Basic Zmlyc3QtdG9rZW4tMDEyMzQ1Njc4OQ=='],
    ['an empty bearer', 'Bearer '],
  ] as const) {
    it(`answers 401 invalid_token to ${label}`, async () => {
      const response = await post('bad token', authorization);
      assert.equal(response.statusCode, 401);
      assert.equal(response.headers['www-authenticate'], 'Bearer realm="digestd", error="invalid_token"');
    });
  }

  it('accepts each configured token, with the scheme in any case', async () => {
    assert.equal((await post('with first', 'Bearer first-token-0123456789')).statusCode, 201);
    assert.equal((await post('with second', 'bearer second-token-abcdef')).statusCode, 201);
  });

  it('protects batches too', async () => {
    assert.equal((await post('batched', undefined, '/messages/batch')).statusCode, 401);
    assert.equal((await post('batched', 'Bearer second-token-abcdef', '/messages/batch')).statusCode, 201);
  });

  it('leaves reads open: GET, HEAD and lookup', async () => {
    const digest = sha256Hex('with first');
    assert.equal((await app.inject({ method: 'GET', url: `/messages/${digest}` })).statusCode, 200);
    assert.equal((await app.inject({ method: 'HEAD', url: `/messages/${digest}` })).statusCode, 200);
    const lookup = await app.inject({
      method: 'POST',
      url: '/messages/lookup',
      headers: json,
      payload: { digests: [digest] },
    });
    assert.equal(lookup.statusCode, 200);
  });
});

describe('rate limit', () => {
  let testApp: TestApp;
  let app: FastifyInstance;
  before(async () => {
    testApp = await buildTestApp(['--rate-limit', '3/min']);
    app = testApp.app;
  });
  after(() => testApp.close());

  const get = (remoteAddress: string, url = `/messages/${'0'.repeat(64)}`) =>
    app.inject({ method: 'GET', url, remoteAddress });

  it('answers 429 with Retry-After past N requests per window from one client', async () => {
    for (let attempt = 0; attempt < 3; attempt++) assert.equal((await get('10.0.0.1')).statusCode, 404);
    const limited = await get('10.0.0.1');
    assert.equal(limited.statusCode, 429);
    assert.equal(limited.json<{ code: string }>().code, 'TOO_MANY_REQUESTS');
    assert.deepEqual(Object.keys(limited.json<object>()).sort(), ['code', 'err_msg']);
    const retryAfter = Number(limited.headers['retry-after']);
    assert.ok(
      Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
      `Retry-After ${retryAfter}`,
    );
  });

  it('counts each client address on its own', async () => {
    assert.equal((await get('10.0.0.2')).statusCode, 404);
  });

  it('never limits /healthz, /readyz or /metrics', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      for (const url of ['/healthz', '/readyz', '/metrics']) {
        assert.equal((await get('10.0.0.3', url)).statusCode, 200, url);
      }
    }
  });

  it('applies to writes as well', async () => {
    const write = () =>
      app.inject({
        method: 'POST',
        url: '/messages',
        headers: json,
        payload: { message: 'x' },
        remoteAddress: '10.0.0.4',
      });
    for (let attempt = 0; attempt < 3; attempt++) assert.equal((await write()).statusCode, 201);
    assert.equal((await write()).statusCode, 429);
  });
});

describe('rate limit behind a trusted proxy', () => {
  it('counts the client named in X-Forwarded-For by a trusted proxy, and ignores it from anyone else', async () => {
    const testApp = await buildTestApp(['--rate-limit', '2/min', '--trust-proxy', '10.9.9.9']);
    try {
      const get = (remoteAddress: string, forwardedFor: string) =>
        testApp.app.inject({
          method: 'GET',
          url: `/messages/${'0'.repeat(64)}`,
          remoteAddress,
          headers: { 'x-forwarded-for': forwardedFor },
        });
      // Through the proxy, two clients each get their own two requests.
      for (const client of ['192.0.2.1', '192.0.2.2']) {
        assert.equal((await get('10.9.9.9', client)).statusCode, 404);
        assert.equal((await get('10.9.9.9', client)).statusCode, 404);
      }
      assert.equal((await get('10.9.9.9', '192.0.2.1')).statusCode, 429);
      // An untrusted sender cannot pick a fresh address for itself: it is counted as itself.
      assert.equal((await get('198.51.100.7', '192.0.2.50')).statusCode, 404);
      assert.equal((await get('198.51.100.7', '192.0.2.51')).statusCode, 404);
      assert.equal((await get('198.51.100.7', '192.0.2.52')).statusCode, 429);
    } finally {
      await testApp.close();
    }
  });
});

describe('backpressure', () => {
  it('answers 503 OVERLOADED with Retry-After past the memory limit, keeping /healthz and /metrics open', async () => {
    // Any process uses more than 1 byte of heap: once under-pressure has sampled, requests are shed.
    const testApp = await buildTestApp(['--max-heap-used', '1']);
    try {
      let response = await testApp.app.inject({ method: 'GET', url: `/messages/${'0'.repeat(64)}` });
      for (let waited = 0; response.statusCode !== 503 && waited < 100; waited++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        response = await testApp.app.inject({ method: 'GET', url: `/messages/${'0'.repeat(64)}` });
      }
      assert.equal(response.statusCode, 503);
      assert.equal(response.headers['retry-after'], '5');
      assert.deepEqual(response.json(), {
        err_msg: 'The server is overloaded; try again shortly.',
        code: 'OVERLOADED',
      });
      assert.equal((await testApp.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
      assert.equal((await testApp.app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
    } finally {
      await testApp.close();
    }
  });

  it('logs shed requests at warn without a stack, once per interval, and no client error with a stack', async () => {
    const lines: Record<string, unknown>[] = [];
    const testApp = await buildTestApp(['--max-heap-used', '1'], {
      logger: createLogger({
        level: 'info',
        destination: {
          write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>),
        },
      }),
    });
    try {
      const missing = { method: 'GET' as const, url: `/messages/${'0'.repeat(64)}` };
      for (let waited = 0; waited < 100; waited++) {
        if ((await testApp.app.inject(missing)).statusCode === 503) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      for (let index = 0; index < 50; index++)
        assert.equal((await testApp.app.inject(missing)).statusCode, 503);
      const shed = lines.filter((line) => line.code === 'OVERLOADED');
      assert.equal(shed.length, 1, 'one line for 51 shed requests within the interval');
      assert.equal(shed[0]?.level, 'warn');
      assert.equal(shed[0]?.err, undefined, 'no error object, so no stack');
      assert.ok(
        !lines.some((line) => line.level === 'error'),
        JSON.stringify(lines.find((line) => line.level === 'error')),
      );
      assert.ok(!JSON.stringify(lines).includes('"stack"'));
      assert.equal(lines.filter((line) => line.msg === 'request' && line.status === 503).length >= 51, true);
    } finally {
      await testApp.close();
    }
  });

  it('serves normally under generous limits', async () => {
    const testApp = await buildTestApp([
      '--max-event-loop-delay',
      '60000',
      '--max-heap-used',
      '64GiB',
      '--max-rss',
      '64GiB',
    ]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1200));
      assert.equal((await testApp.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
      const response = await testApp.app.inject({ method: 'GET', url: `/messages/${'0'.repeat(64)}` });
      assert.equal(response.statusCode, 404);
    } finally {
      await testApp.close();
    }
  });
});
