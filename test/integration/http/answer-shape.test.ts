import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../../harness/sha256.js';
import { request, startServer, type RunningServer } from '../../helpers/server.js';
import { openTls, parseResponses, receiveUntilClose, type RawResponse } from '../../helpers/sockets.js';

/**
 * Sends raw bytes on a fresh TLS connection and parses every answer until the server closes it;
 * a connection still open after 5 s fails the test (each of these answers closes its connection).
 */
async function exchange(server: RunningServer, bytes: string): Promise<RawResponse[]> {
  const socket = await openTls(server);
  const received = receiveUntilClose(socket);
  socket.write(bytes);
  let kept = false;
  const timer = setTimeout(() => {
    kept = true;
    socket.destroy();
  }, 5000);
  const { bytes: raw } = await received;
  clearTimeout(timer);
  const responses = parseResponses(raw);
  assert.ok(!kept, `the server closes the connection after ${responses[0]?.status ?? 'no answer'}`);
  return responses;
}

/** The security and caching headers every answer carries, and the JSON error shape. */
function assertErrorShape(response: RawResponse | undefined, status: number, code: string): void {
  assert.ok(response, `an answer ${status} ${code}`);
  assert.equal(response.status, status, response.body);
  assert.equal(response.headers['content-type'], 'application/json', `${code}: content-type`);
  assert.equal(response.headers['x-content-type-options'], 'nosniff', `${code}: nosniff`);
  assert.equal(response.headers['strict-transport-security'], 'max-age=31536000', `${code}: HSTS`);
  assert.equal(response.headers['cache-control'], 'no-store', `${code}: no-store`);
  const body = JSON.parse(response.body) as { err_msg?: unknown; code?: unknown };
  assert.equal(body.code, code);
  assert.equal(typeof body.err_msg, 'string');
}

/** digestd_http_requests_total summed over every label set with this status. */
function countOf(metrics: string, status: number): number {
  let total = 0;
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('digestd_http_requests_total{') || !line.includes(`status="${status}"`)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

describe('every answer has the same shape, headers and log line', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({
      args: [
        '--workers',
        '1',
        '--headers-timeout',
        '500',
        '--max-header-size',
        '4KiB',
        '--max-url-length',
        '1KiB',
      ],
    });
  });
  after(async () => {
    assert.equal(await server.stop(), 0);
  });

  const cases: { name: string; bytes: string; status: number; code: string }[] = [
    {
      name: 'CONNECT',
      bytes: 'CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n',
      status: 405,
      code: 'METHOD_NOT_ALLOWED',
    },
    { name: 'GET *', bytes: 'GET * HTTP/1.1\r\nHost: localhost\r\n\r\n', status: 400, code: 'BAD_REQUEST' },
    {
      name: 'two Host headers',
      bytes: 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: example.org\r\n\r\n',
      status: 400,
      code: 'BAD_REQUEST',
    },
    {
      name: 'Transfer-Encoding: gzip, chunked',
      bytes:
        'POST /messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n' +
        'Transfer-Encoding: gzip, chunked\r\n\r\n11\r\n{"message":"te!"}\r\n0\r\n\r\n',
      status: 501,
      code: 'UNSUPPORTED_TRANSFER_CODING',
    },
    { name: 'no Host', bytes: 'GET /healthz HTTP/1.1\r\n\r\n', status: 400, code: 'BAD_REQUEST' },
    {
      name: 'Expect other than 100-continue',
      bytes: 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nExpect: the-unexpected\r\n\r\n',
      status: 417,
      code: 'EXPECTATION_FAILED',
    },
    { name: 'garbage', bytes: 'NOT HTTP AT ALL\r\n\r\n', status: 400, code: 'MALFORMED_REQUEST' },
    {
      name: 'headers over the limit',
      bytes: `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`,
      status: 431,
      code: 'HEADERS_TOO_LARGE',
    },
    {
      name: 'URL over the limit',
      bytes: `GET /messages/${'a'.repeat(1100)} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
      status: 414,
      code: 'URI_TOO_LONG',
    },
    {
      name: 'headers too slow',
      // No blank line: the headers never end, and the 500 ms header timeout answers.
      bytes: 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n',
      status: 408,
      code: 'REQUEST_TIMEOUT',
    },
  ];

  for (const { name, bytes, status, code } of cases) {
    it(`answers ${name} with a JSON ${status} ${code}, the security headers, an access line and a count`, async () => {
      const metricsBefore = (await request(`${server.url}/metrics`, { ca: server.ca })).body;
      const linesBefore = server.logs.length;
      const [response, ...rest] = await exchange(server, bytes);
      assertErrorShape(response, status, code);
      assert.equal(rest.length, 0);
      const line = await server.waitForLog(
        (entry) =>
          server.logs.indexOf(entry) >= linesBefore && entry.msg === 'request' && entry.status === status,
        5000,
      );
      assert.equal(typeof line.ms, 'number');
      assert.equal(line.bytes, Buffer.byteLength(response!.body));
      const metricsAfter = (await request(`${server.url}/metrics`, { ca: server.ca })).body;
      assert.equal(countOf(metricsAfter, status), countOf(metricsBefore, status) + 1, 'counted once');
    });
  }

  it('stores nothing sent with a transfer coding other than chunked', async () => {
    const digest = sha256Hex('te!');
    const reply = await request(`${server.url}/messages/${digest}`, { ca: server.ca });
    assert.equal(reply.status, 404);
  });

  it('logs no client error with a stack trace', () => {
    for (const entry of server.logs) {
      const err = entry.err as { stack?: unknown } | undefined;
      if (typeof entry.status === 'number' && entry.status < 500) assert.equal(err?.stack, undefined);
    }
    assert.ok(!server.logs.some((entry) => typeof entry.level === 'number' && entry.level >= 50));
  });
});
