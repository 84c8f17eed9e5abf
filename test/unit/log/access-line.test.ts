import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { accessLineWriter, type AccessFields } from '../../../src/log/access-line.js';
import { createLogger } from '../../../src/log/logger.js';
import { buildTestApp } from '../../helpers/app.js';
import type { MessageStore } from '../../../src/store/types.js';

/** A logger as `digestd serve` makes it, writing its lines into an array. */
function capture(level: 'info' | 'warn' = 'info') {
  const lines: string[] = [];
  const logger = createLogger({ level, destination: { write: (line: string) => void lines.push(line) } });
  return { logger, lines };
}

/** The line pino itself writes for these fields: a child with the request id (if any), then info(). */
function pinoLine(logger: pino.Logger, lines: string[], { reqId, ...fields }: AccessFields): string {
  (reqId === undefined ? logger : logger.child({ reqId })).info(fields, 'request');
  return lines.pop() ?? '';
}

/** Lines written in the same second differ at most in their milliseconds; compare without them. */
const withoutTime = (line: string) => line.replace(/"time":"[^"]*"/, '"time":""');

const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 120 }),
  fc.string({ unit: fc.constantFrom('a', '/', '"', '\\', '\n', '\u0001', '\u007f', 'é', '\u2028', '😀') }),
);
const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, 404, 12.345));
const fields: fc.Arbitrary<AccessFields> = fc.record({
  reqId: fc.option(text, { nil: undefined }),
  method: text,
  url: text,
  status: number,
  bytes: number,
  ms: number,
  remote: fc.option(text, { nil: undefined }),
});

/** One request's access fields, for the tests that look at the line's other parts. */
const ACCESS = { reqId: '1', method: 'GET', url: '/', status: 200, bytes: 2, ms: 1, remote: '::1' };

describe('the access line', () => {
  it('is byte for byte the line pino writes (a child with the request id, then info()), for any field values', () => {
    const { logger, lines } = capture();
    const write = accessLineWriter(logger);
    fc.assert(
      fc.property(fields, (access) => {
        write(access);
        const ours = lines.pop() ?? '';
        const theirs = pinoLine(logger, lines, access);
        assert.equal(withoutTime(ours), withoutTime(theirs));
        assert.deepEqual(Object.keys(JSON.parse(ours) as object), Object.keys(JSON.parse(theirs) as object));
      }),
      { numRuns: 500 },
    );
  });

  it('carries the time of the line, formatted as pino formats it', () => {
    const { logger, lines } = capture();
    const before = Date.now();
    accessLineWriter(logger)(ACCESS);
    const after = Date.now();
    const { time } = JSON.parse(lines[0] ?? '') as { time: string };
    assert.match(time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.ok(Date.parse(time) >= before && Date.parse(time) <= after, `${time} lies within the test`);
  });

  it('follows the logger level, also when it changes later', () => {
    const { logger, lines } = capture('warn');
    const write = accessLineWriter(logger);
    write(ACCESS);
    assert.equal(lines.length, 0, 'nothing at warn');
    logger.level = 'info';
    write(ACCESS);
    assert.equal(lines.length, 1, 'written once the level is info');
  });

  it('is written by pino itself for a logger that shapes its lines further (a mixin)', () => {
    const lines: string[] = [];
    const logger = pino(
      { mixin: () => ({ extra: true }) },
      { write: (line: string) => void lines.push(line) },
    );
    accessLineWriter(logger)(ACCESS);
    assert.equal((JSON.parse(lines[0] ?? '') as { extra?: boolean }).extra, true);
  });
});

describe('request logging of the app', () => {
  it('writes one access line per request, and lines logged by a request carry its reqId', async () => {
    const { logger, lines } = capture();
    const failing: Partial<MessageStore> = {
      kind: 'failing',
      get: () => Promise.reject(new Error('disk on fire')),
      getSync: () => {
        throw new Error('disk on fire');
      },
    };
    const built = await buildTestApp([], { logger });
    const { app, store } = built;
    try {
      const posted = await app.inject({ method: 'POST', url: '/messages', payload: { message: 'hello' } });
      assert.equal(posted.statusCode, 201);
      const { digest } = posted.json<{ digest: string }>();
      await app.inject({ method: 'GET', url: `/messages/${digest}` });
      await app.inject({ method: 'GET', url: '/nowhere?a=%22b%22' });
      Object.assign(store, failing);
      const failed = await app.inject({ method: 'GET', url: `/messages/${digest}` });
      assert.equal(failed.statusCode, 500);
      const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      const access = parsed.filter((line) => line.msg === 'request');
      assert.deepEqual(
        access.map(({ method, url, status }) => [method, url, status]),
        [
          ['POST', '/messages', 201],
          ['GET', `/messages/${digest}`, 200],
          ['GET', '/nowhere?a=%22b%22', 404],
          ['GET', `/messages/${digest}`, 500],
        ],
      );
      for (const line of access) {
        assert.deepEqual(Object.keys(line), [
          'level',
          'time',
          'pid',
          'reqId',
          'method',
          'url',
          'status',
          'bytes',
          'ms',
          'remote',
          'msg',
        ]);
      }
      const failure = parsed.find((line) => line.msg === 'request failed');
      assert.ok(failure, 'the failed read is logged');
      assert.equal(failure.reqId, access[3]?.reqId, 'with the request id of its access line');
      assert.equal(new Set(access.map((line) => line.reqId)).size, 4, 'each request has its own id');
    } finally {
      await built.close();
    }
  });
});
