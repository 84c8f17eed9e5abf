import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../../harness/sha256.js';
import { request, startServer, type RunningServer } from '../../helpers/server.js';
import { parseResponses } from '../../helpers/sockets.js';

const LIMIT = 64 * 1024;

/** `{"message": ...}` with every character written as a \u escape: six bytes a byte. */
function escapedBody(message: string): string {
  let escaped = '';
  for (const character of message) escaped += `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
  return `{"message":"${escaped}"}`;
}

/** What a client that writes its whole request before reading sees. */
interface Outcome {
  /** The error a write or read ended with (EPIPE, ECONNRESET), if any. */
  error: string | undefined;
  /** The raw bytes received before the server closed the connection or `closeAfterMs` passed. */
  received: Buffer;
}

/**
 * Writes a POST with a body of `bodyBytes` bytes in 64 KiB writes, as a client that reads only
 * once it has sent everything, then one GET on the same connection, and collects what comes back.
 */
async function sendWholeBody(server: RunningServer, bodyBytes: number): Promise<Outcome> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const opened = connect({ host: '127.0.0.1', port: server.port }, () => resolve(opened));
    opened.once('error', reject);
  });
  let error: string | undefined;
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', (cause: NodeJS.ErrnoException) => (error ??= cause.code));
  socket.pause();
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const write = (data: string | Buffer) =>
    new Promise<void>((resolve) => {
      if (socket.destroyed) return resolve();
      socket.write(data, () => resolve());
    });
  await write(
    'POST /messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${bodyBytes}\r\n\r\n`,
  );
  const piece = Buffer.alloc(64 * 1024, 'a');
  for (let sent = 0; sent < bodyBytes && !socket.destroyed; sent += piece.length) {
    await write(piece.subarray(0, Math.min(piece.length, bodyBytes - sent)));
  }
  await write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), 10_000);
  await closed;
  clearTimeout(timer);
  return { error, received: Buffer.concat(chunks) };
}

describe('the message limit is about the message', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({
      args: ['--no-tls', '--workers', '1', '--max-message-size', String(LIMIT)],
    });
  });
  after(async () => {
    assert.equal(await server.stop(), 0);
  });

  const post = (body: string, contentType = 'application/json') =>
    request(`${server.url}/messages`, { method: 'POST', headers: { 'content-type': contentType }, body });

  it('stores a message of exactly --max-message-size sent with every byte escaped (six times the body)', async () => {
    const message = '\u0001'.repeat(LIMIT);
    const body = escapedBody(message);
    assert.ok(body.length > 6 * LIMIT);
    const reply = await post(body);
    assert.equal(reply.status, 201, reply.body);
    assert.deepEqual(reply.json(), { digest: sha256Hex(message) });
  });

  it('answers 413 naming the message for a message one byte over, however it is escaped', async () => {
    for (const body of [
      escapedBody('a'.repeat(LIMIT + 1)),
      JSON.stringify({ message: 'a'.repeat(LIMIT + 1) }),
    ]) {
      const reply = await post(body);
      assert.equal(reply.status, 413);
      assert.deepEqual(reply.json(), {
        err_msg: `The message is larger than the limit of ${LIMIT} bytes.`,
        code: 'PAYLOAD_TOO_LARGE',
      });
    }
    const text = await post('a'.repeat(LIMIT + 1), 'text/plain; charset=utf-8');
    assert.equal(text.status, 413);
    assert.match(text.json<{ err_msg: string }>().err_msg, /^The message is larger/);
  });

  it('answers 413 naming the body, with its limit, for a body larger than any escaped message', async () => {
    const reply = await post(`{"message":"${'a'.repeat(6 * LIMIT + 2048)}"}`);
    assert.equal(reply.status, 413);
    assert.deepEqual(reply.json(), {
      err_msg: `The request body is larger than the limit of ${6 * LIMIT + 1024} bytes.`,
      code: 'PAYLOAD_TOO_LARGE',
    });
  });

  it('lets a client that writes a large oversized body whole read the 413, and keeps the connection', async () => {
    const outcome = await sendWholeBody(server, 16 * 1024 * 1024);
    assert.equal(outcome.error, undefined, 'no EPIPE or reset while sending');
    const [refused, next, ...rest] = parseResponses(outcome.received);
    assert.equal(refused?.status, 413);
    assert.match(refused?.body ?? '', /"code":"PAYLOAD_TOO_LARGE"/);
    assert.equal(next?.status, 200, 'the next request on the connection is served');
    assert.equal(rest.length, 0);
  });
});
