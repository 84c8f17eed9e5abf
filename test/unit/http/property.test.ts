import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { useTestApp } from '../../helpers/app.js';
import { sha256Hex } from '../../harness/sha256.js';

/**
 * Property-based tests over the HTTP API (fast-check, through Fastify inject). Run counts are
 * bounded so the suite stays fast; a failure prints the shrunk counterexample and its seed
 * (replay with fc.assert(..., { seed, path })).
 */

const MAX_MESSAGE_SIZE = 4096;
const RUNS = 300;

const testApp = useTestApp(['--max-message-size', String(MAX_MESSAGE_SIZE)]);

function postJson(payload: string | Buffer, contentType = 'application/json') {
  return testApp.app.inject({
    method: 'POST',
    url: '/messages',
    headers: { 'content-type': contentType },
    payload,
  });
}

/** Every non-2xx answer is a client error in the one error shape; never a 5xx. */
function assertCleanAnswer(response: LightMyRequestResponse) {
  assert.ok(response.statusCode < 500, `${response.statusCode} ${response.body}`);
  if (response.statusCode >= 400) {
    assert.equal(response.headers['content-type'], 'application/json');
    const body = response.json<Record<string, unknown>>();
    assert.deepEqual(Object.keys(body).sort(), ['code', 'err_msg']);
    assert.equal(typeof body.code, 'string');
    assert.equal(typeof body.err_msg, 'string');
  }
}

async function assertRoundTrip(message: string) {
  const posted = await postJson(JSON.stringify({ message }));
  assert.equal(posted.statusCode, 201, posted.body);
  assert.deepEqual(posted.json(), { digest: sha256Hex(message) });
  const read = await testApp.app.inject({ method: 'GET', url: `/messages/${sha256Hex(message)}` });
  assert.equal(read.statusCode, 200);
  assert.equal(read.json<{ message: string }>().message, message);
}

/** Strings that are easy to get wrong: escapes, controls, separators, BOM, combining marks, astral. */
const awkwardUnit = fc.constantFrom(
  '\\',
  '"',
  '/',
  '\u0000',
  '\n',
  '\u001f',
  '\u007f',
  '\u0085',
  '\u2028',
  '\u2029',
  '\ufeff',
  '\ufffd',
  '\uffff',
  'e\u0301',
  '\u{1f600}',
  '\u{1f469}\u200d\u{1f4bb}',
  '\u{10ffff}',
  'ß',
  'İ',
  '한',
  '\u0645\u0631\u062d\u0628\u0627',
);

describe('property: messages round-trip with their SHA-256 digest', () => {
  it('for any string of Unicode code points (astral included, no lone surrogates)', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 200 }), assertRoundTrip), {
      numRuns: RUNS,
    });
  });

  it('for strings of graphemes and of characters that need JSON escapes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ unit: 'grapheme', maxLength: 100 }),
          fc.string({ unit: awkwardUnit, maxLength: 60 }),
        ),
        assertRoundTrip,
      ),
      { numRuns: RUNS },
    );
  });

  it('for strings shaped like digests, paths, numbers and JSON', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.stringMatching(/^[0-9a-f]{64}$/),
          fc.stringMatching(/^\/messages\/[\w%.-]{0,70}$/),
          fc.stringMatching(/^-?\d{1,30}(\.\d{1,10})?(e[+-]?\d{1,3})?$/),
          fc.json(),
        ),
        assertRoundTrip,
      ),
      { numRuns: RUNS },
    );
  });

  it('for messages of exactly the limit in UTF-8 bytes, and refuses one byte more with 413', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('a', 'é', '한', '\u{1f600}'), async (unit) => {
        const unitBytes = Buffer.byteLength(unit);
        const fitting = unit.repeat(Math.floor(MAX_MESSAGE_SIZE / unitBytes));
        const padded = fitting + 'a'.repeat(MAX_MESSAGE_SIZE - Buffer.byteLength(fitting));
        await assertRoundTrip(padded);
        const over = await postJson(JSON.stringify({ message: padded + 'a' }));
        assert.equal(over.statusCode, 413);
        assertCleanAnswer(over);
      }),
      { numRuns: 20 },
    );
  });
});

describe('property: hostile bodies never produce a 5xx', () => {
  it('a lone surrogate anywhere in the message answers 400 INVALID_MESSAGE', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: 'binary', maxLength: 50 }),
        fc.integer({ min: 0xd800, max: 0xdfff }),
        fc.string({ unit: 'binary', maxLength: 50 }),
        async (before, surrogate, after) => {
          // JSON.stringify writes a lone surrogate as a \u escape, which is valid JSON.
          const response = await postJson(
            JSON.stringify({ message: before + String.fromCharCode(surrogate) + after }),
          );
          assert.equal(response.statusCode, 400, response.body);
          assert.equal(response.json<{ code: string }>().code, 'INVALID_MESSAGE');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('random bytes under any content type', async () => {
    const contentType = fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'text/plain; charset=utf-8',
      'application/octet-stream',
      'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded',
      '',
      ';;;',
      'application/json; charset=latin1',
    );
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), contentType, async (bytes, type) => {
        assertCleanAnswer(await postJson(Buffer.from(bytes), type));
      }),
      { numRuns: RUNS },
    );
  });

  it('random JSON documents, with or without a message field of any type', async () => {
    const body = fc.oneof(
      fc.jsonValue(),
      fc.record({ message: fc.jsonValue() }),
      fc.dictionary(
        fc.constantFrom('message', '__proto__', 'constructor', 'prototype', 'toString'),
        fc.jsonValue(),
      ),
      fc.anything({ withObjectString: true, withNullPrototype: true }).map((value) => ({ message: value })),
    );
    await fc.assert(
      fc.asyncProperty(body, async (value) => {
        const text = JSON.stringify(value) ?? 'null';
        const response = await postJson(text);
        assertCleanAnswer(response);
        const parsed: unknown = JSON.parse(text);
        const message =
          typeof parsed === 'object' &&
          parsed !== null &&
          !Array.isArray(parsed) &&
          Object.hasOwn(parsed, 'message')
            ? (parsed as { message: unknown }).message
            : undefined;
        if (typeof message === 'string' && message.isWellFormed()) {
          assert.equal(response.statusCode, 201, response.body);
          assert.deepEqual(response.json(), { digest: sha256Hex(message) });
        } else {
          assert.equal(response.statusCode, 400, response.body);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('random text that is almost JSON (truncated, mangled)', async () => {
    const mangled = fc
      .tuple(fc.json(), fc.nat(), fc.string({ unit: 'binary-ascii', maxLength: 3 }))
      .map(([json, cut, junk]) => {
        const at = json.length === 0 ? 0 : cut % json.length;
        return `{"message":${json.slice(0, at)}${junk}${json.slice(at)}`;
      });
    await fc.assert(
      fc.asyncProperty(mangled, async (text) => assertCleanAnswer(await postJson(text))),
      { numRuns: RUNS },
    );
  });

  it('random paths and methods', async () => {
    const method = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS');
    // Printable ASCII but the backslash, which inject's WHATWG URL parser (not the server) rejects;
    // test/integration/reliability/hostile-clients.test.ts sends raw bytes over real sockets.
    const path = fc.oneof(
      fc.stringMatching(/^\/messages\/[\x21-\x5b\x5d-\x7e]{0,80}$/),
      fc.stringMatching(/^\/[\x21-\x5b\x5d-\x7e]{0,40}(\?[\x21-\x5b\x5d-\x7e]{0,40})?$/),
      fc.string({ unit: 'binary', maxLength: 40 }).map((text) => `/messages/${encodeURIComponent(text)}`),
    );
    await fc.assert(
      fc.asyncProperty(method, path, async (verb, url) => {
        const response = await testApp.app.inject({ method: verb as 'GET', url });
        if (verb === 'HEAD') assert.ok(response.statusCode < 500 && response.body === '');
        else assertCleanAnswer(response);
      }),
      { numRuns: RUNS },
    );
  });
});
