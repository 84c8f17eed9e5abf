import assert from 'node:assert/strict';
import { tracingChannel } from 'node:diagnostics_channel';
import { Agent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { open as openLmdb } from 'lmdb';
import { createLogger } from '../../../src/log/logger.js';
import { sha256Hex } from '../../harness/sha256.js';
import { buildTestApp, type TestApp } from '../../helpers/app.js';

/**
 * The fast read path (src/http/fast-read.ts) answers plain GETs before Fastify. Two apps over the
 * same messages, one with it and one without, get the same random requests over real connections:
 * the answers must be the same byte for byte (status line, headers in order, body; the Date
 * header's value aside), and so must the access lines (time, id and duration aside) and the
 * request, store and corruption counts.
 */

interface Server {
  testApp: TestApp;
  lines: Record<string, unknown>[];
  port: number;
  agent: Agent;
}

const MESSAGES = [
  'hello',
  '',
  'ünïcødé 😀',
  'quote " and \\ backslash',
  'line\nbreak\u0001',
  'x'.repeat(300),
];
const CORRUPT = 'this entry is tampered with';
const REMOVED_MESSAGE = 'this one was taken down';
const MISSING = 'ab'.repeat(32);

async function server(fastRead: boolean): Promise<Server> {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'info',
    destination: {
      write: (text: string) => {
        for (const line of text.split('\n').filter(Boolean))
          lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  const testApp = await buildTestApp([], { logger, fastRead });
  for (const message of [...MESSAGES, CORRUPT, REMOVED_MESSAGE]) {
    const response = await testApp.app.inject({
      method: 'POST',
      url: '/messages',
      headers: { 'content-type': 'application/json' },
      payload: { message },
    });
    assert.equal(response.statusCode, 201);
  }
  assert.equal(await testApp.store.remove(Buffer.from(sha256Hex(REMOVED_MESSAGE), 'hex')), 'removed');
  const raw = openLmdb<string, Buffer>({
    path: testApp.directory,
    encoding: 'string',
    keyEncoding: 'binary',
    compression: false,
  });
  await raw.put(Buffer.from(sha256Hex(CORRUPT), 'hex'), 'something else');
  await raw.close();
  await testApp.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = testApp.app.server.address() as AddressInfo;
  return { testApp, lines, port, agent: new Agent({ keepAlive: true, maxSockets: 1 }) };
}

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
}

interface Answer {
  status: number;
  statusMessage: string;
  rawHeaders: string[];
  body: string;
}

function send(target: Server, request: Request): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: '127.0.0.1',
        port: target.port,
        agent: target.agent,
        method: request.method,
        path: request.path,
        headers: request.headers,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            statusMessage: response.statusMessage ?? '',
            // Node writes the date of the current second; two answers may straddle one.
            rawHeaders: response.rawHeaders.map((value, index, all) =>
              index % 2 === 1 && all[index - 1]?.toLowerCase() === 'date' ? '<date>' : value,
            ),
            body: Buffer.concat(chunks).toString('latin1'),
          }),
        );
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end();
  });
}

/** The counts of requests and store operations in /metrics, by series. */
async function counts(target: Server): Promise<Map<string, number>> {
  const text = (await target.testApp.app.inject({ method: 'GET', url: '/metrics' })).body;
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (
      /^digestd_http_requests_total\{/.test(line) ||
      /^digestd_http_request_duration_seconds_count\{/.test(line) ||
      /^digestd_store_operation_duration_seconds_count\{/.test(line) ||
      /^digestd_corrupt_messages_total /.test(line)
    ) {
      const space = line.lastIndexOf(' ');
      found.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
  }
  return found;
}

function difference(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const changed: Record<string, number> = {};
  for (const [series, value] of after) {
    const delta = value - (before.get(series) ?? 0);
    if (delta !== 0) changed[series] = delta;
  }
  return changed;
}

/** Waits (bounded) until `count` more lines than `from` have been logged. */
async function linesAfter(target: Server, from: number, count: number): Promise<Record<string, unknown>[]> {
  for (let attempt = 0; attempt < 200 && target.lines.length < from + count; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return target.lines.slice(from);
}

/**
 * A line without what differs between any two requests: its time, request id and duration, and
 * the stack of a logged error, whose frames name the path that answered.
 */
function comparable(line: Record<string, unknown>): Record<string, unknown> {
  const rest = { ...line };
  for (const varying of ['time', 'reqId', 'ms']) delete rest[varying];
  if (typeof rest.err === 'object' && rest.err !== null) rest.err = { ...rest.err, stack: '<stack>' };
  return rest;
}

const digests = [...MESSAGES, CORRUPT, REMOVED_MESSAGE].map(sha256Hex);
const path = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...digests).map((digest) => `/messages/${digest}`) },
  { weight: 2, arbitrary: fc.constantFrom(...digests).map((digest) => `/messages/${digest.toUpperCase()}`) },
  { weight: 3, arbitrary: fc.constant(`/messages/${MISSING}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      `/messages/${MISSING.slice(1)}`,
      `/messages/${MISSING.slice(2)}zz`,
      `/messages/${digests[0]}?x=1`,
      `/messages/${digests[0]}/`,
      `/messages/${digests[0]}0`,
      '/messages',
      '/healthz',
    ),
  },
);
const header = (values: string[]) => fc.option(fc.constantFrom(...values), { nil: undefined });
const request: fc.Arbitrary<Request> = fc
  .record({
    method: fc.constantFrom('GET', 'GET', 'GET', 'GET', 'HEAD', 'DELETE'),
    path,
    accept: header(['application/json', 'text/plain', '*/*', 'text/*;q=0.1, application/json', 'image/png']),
    ifNoneMatch: header([`"${digests[0]}"`, '"other"', '*']),
  })
  .map(({ method, path: target, accept, ifNoneMatch }) => ({
    method,
    path: target,
    headers: {
      ...(accept !== undefined && { accept }),
      ...(ifNoneMatch !== undefined && { 'if-none-match': ifNoneMatch }),
    },
  }));

describe('the fast read path', () => {
  let fast: Server;
  let reference: Server;
  before(async () => {
    fast = await server(true);
    reference = await server(false);
  });
  after(async () => {
    for (const target of [fast, reference]) {
      target.agent.destroy();
      await target.testApp.close();
    }
  });

  it('answers, logs and counts as the Fastify route does, for any sequence of requests', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 12 }), async (sequence) => {
        const results = [];
        for (const target of [fast, reference]) {
          const before = await counts(target);
          const from = target.lines.length;
          const answers: Answer[] = [];
          for (const entry of sequence) answers.push(await send(target, entry));
          const logged = await linesAfter(target, from, sequence.length);
          results.push({
            answers,
            logged: logged.map(comparable),
            counts: difference(await counts(target), before),
          });
        }
        const [ours, theirs] = results as [(typeof results)[0], (typeof results)[0]];
        assert.deepEqual(ours.answers, theirs.answers);
        assert.deepEqual(ours.logged, theirs.logged);
        assert.deepEqual(ours.counts, theirs.counts);
      }),
      { numRuns: 60 },
    );
  });

  it('answers plain reads itself, and leaves the rest to Fastify', async () => {
    // Fastify announces each request its route handler runs for on this tracing channel.
    const handled: string[] = [];
    const onStart = (message: unknown) =>
      void handled.push(String((message as { request: { url: string } }).request.url));
    const channel = tracingChannel('fastify.request.handler');
    const subscribers = { start: onStart, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
    channel.subscribe(subscribers);
    try {
      const plain = [
        `/messages/${digests[0]}`,
        `/messages/${MISSING}`,
        `/messages/${sha256Hex(REMOVED_MESSAGE)}`,
      ];
      for (const path of plain) await send(fast, { method: 'GET', path, headers: {} });
      assert.deepEqual(handled, [], 'plain reads are answered before Fastify');
      const removed = await send(fast, { method: 'GET', path: plain[2]!, headers: {} });
      assert.equal(removed.status, 410);
      assert.match(removed.body, /"code":"MESSAGE_REMOVED"/);
      await send(fast, { method: 'HEAD', path: plain[0]!, headers: {} });
      await send(fast, { method: 'GET', path: plain[0]!, headers: { accept: 'text/plain' } });
      assert.deepEqual(handled, [plain[0], plain[0]]);
      const corrupt = await send(fast, {
        method: 'GET',
        path: `/messages/${sha256Hex(CORRUPT)}`,
        headers: {},
      });
      assert.equal(corrupt.status, 500);
      assert.deepEqual(handled.length, 2, 'a corrupt entry is refused without a second read by Fastify');
      for (const path of plain) {
        const answer = await send(reference, { method: 'GET', path, headers: {} });
        if (path === plain[2]) assert.equal(answer.status, 410);
      }
      assert.deepEqual(handled.slice(2), plain, 'without the fast path, Fastify answers them');
    } finally {
      channel.unsubscribe(subscribers);
    }
  });
});
