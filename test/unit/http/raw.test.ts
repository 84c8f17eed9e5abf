import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { useTestApp } from '../../helpers/app.js';
import { sha256Hex } from '../../harness/sha256.js';

const TEXT = 'text/plain; charset=utf-8';

const testApp = useTestApp(['--max-message-size', '1024']);

function postText(payload: string | Buffer, contentType = TEXT) {
  return testApp.app.inject({
    method: 'POST',
    url: '/messages',
    headers: { 'content-type': contentType },
    payload,
  });
}

function assertError(response: Awaited<ReturnType<typeof postText>>, status: number, code: string) {
  assert.equal(response.statusCode, status, response.body);
  assert.equal(response.headers['content-type'], 'application/json');
  assert.deepEqual(Object.keys(response.json<object>()).sort(), ['code', 'err_msg']);
  assert.equal(response.json<{ code: string }>().code, code);
}

describe('POST /messages with text/plain', () => {
  it('stores the body itself under the same digest as the JSON form', async () => {
    const message = 'héllo wörld 🎉\nsecond line "quoted" \\ backslash';
    const raw = await postText(message);
    assert.equal(raw.statusCode, 201);
    const viaJson = await testApp.app.inject({
      method: 'POST',
      url: '/messages',
      headers: { 'content-type': 'application/json' },
      payload: { message },
    });
    assert.deepEqual(raw.json(), { digest: sha256Hex(message) });
    assert.deepEqual(raw.json(), viaJson.json());
    const read = await testApp.app.inject({ method: 'GET', url: `/messages/${sha256Hex(message)}` });
    assert.deepEqual(read.json(), { message });
  });

  it('keeps a byte-order mark and trailing newline as part of the message', async () => {
    const body = Buffer.from('\uFEFFline\n', 'utf8');
    const response = await postText(body);
    assert.deepEqual(response.json(), { digest: sha256Hex(body) });
  });

  it('accepts text/plain without a charset as UTF-8', async () => {
    const response = await postText('plain', 'text/plain');
    assert.deepEqual(response.json(), { digest: sha256Hex('plain') });
  });

  it('accepts the empty body as the empty message', async () => {
    const response = await postText('');
    assert.deepEqual(response.json(), { digest: sha256Hex('') });
  });

  it('stores a JSON-looking text body literally', async () => {
    const body = '{"message": "foo"}';
    assert.deepEqual((await postText(body)).json(), { digest: sha256Hex(body) });
  });

  it('rejects invalid UTF-8 with 400 INVALID_UTF8', async () => {
    assertError(await postText(Buffer.from([0x66, 0xff, 0xfe])), 400, 'INVALID_UTF8');
  });

  it('rejects a charset other than UTF-8 with 415', async () => {
    for (const contentType of ['text/plain; charset=iso-8859-1', 'text/plain;charset="utf-16"']) {
      const response = await postText('foo', contentType);
      assertError(response, 415, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(response.json<{ err_msg: string }>().err_msg, /charset/);
    }
  });

  it('accepts the charset in any case and quoted', async () => {
    assert.equal((await postText('foo', 'text/plain; charset="UTF-8"')).statusCode, 201);
  });

  it('answers 413 for a text body over the limit, counted in bytes', async () => {
    assertError(await postText('€'.repeat(342)), 413, 'PAYLOAD_TOO_LARGE');
    assert.equal((await postText('€'.repeat(341))).statusCode, 201);
  });

  it('names both accepted types in the 415 for another content type', async () => {
    const response = await postText('foo', 'application/xml');
    assertError(response, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const { err_msg } = response.json<{ err_msg: string }>();
    assert.match(err_msg, /application\/json/);
    assert.match(err_msg, /text\/plain; charset=utf-8/);
  });
});

describe('GET /messages/:digest content negotiation', () => {
  const message = 'raw négociation';
  const digest = sha256Hex(message);
  before(async () => {
    assert.equal((await postText(message)).statusCode, 201);
  });

  const get = (accept?: string) =>
    testApp.app.inject({
      method: 'GET',
      url: `/messages/${digest}`,
      headers: accept === undefined ? {} : { accept },
    });

  it('answers the raw message to Accept: text/plain', async () => {
    const response = await get('text/plain');
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], TEXT);
    assert.equal(response.body, message);
    assert.equal(response.headers.vary, 'Accept');
    assert.equal(response.headers.etag, `"${digest}.txt"`);
  });

  for (const accept of [undefined, '*/*', 'application/json', 'text/html', 'image/png']) {
    it(`answers JSON to Accept: ${accept ?? '(none)'}`, async () => {
      const response = await get(accept);
      assert.equal(response.headers['content-type'], 'application/json');
      assert.deepEqual(response.json(), { message });
      assert.equal(response.headers.etag, `"${digest}"`);
    });
  }

  it('honours q-values', async () => {
    assert.equal((await get('application/json;q=0.5, text/plain')).body, message);
    assert.equal((await get('text/*;q=0.9, */*;q=0.1')).body, message);
    assert.deepEqual((await get('text/plain;q=0.2, application/json;q=0.8')).json(), { message });
    assert.deepEqual((await get('text/plain;q=0, */*')).json(), { message });
  });

  it("follows the client's order when q-values tie,", async () => {
    assert.deepEqual((await get('application/json, text/plain')).json(), { message });
    assert.equal((await get('text/plain, application/json')).body, message);
  });

  it('answers 304 to the text ETag only for the text representation', async () => {
    const text304 = await testApp.app.inject({
      method: 'GET',
      url: `/messages/${digest}`,
      headers: { accept: 'text/plain', 'if-none-match': `"${digest}.txt"` },
    });
    assert.equal(text304.statusCode, 304);
    const json200 = await testApp.app.inject({
      method: 'GET',
      url: `/messages/${digest}`,
      headers: { 'if-none-match': `"${digest}.txt"` },
    });
    assert.equal(json200.statusCode, 200);
  });
});
