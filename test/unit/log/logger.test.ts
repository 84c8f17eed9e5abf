import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../../src/log/logger.js';

/** A logger writing into an array of parsed lines. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  return { logger, lines };
}

describe('the process logger', () => {
  it('stamps each line with the current time as ISO 8601, formatted again once the millisecond changes', async () => {
    const { logger, lines } = capture();
    const before = Date.now();
    logger.info('first');
    logger.info('same millisecond or the next');
    await sleep(5);
    logger.info('later');
    const after = Date.now();
    assert.equal(lines.length, 3);
    const times = lines.map((line) => line.time as string);
    for (const time of times) {
      assert.match(time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      const ms = Date.parse(time);
      assert.ok(ms >= before && ms <= after, `${time} lies within the test`);
    }
    assert.ok(Date.parse(times[2]!) > Date.parse(times[0]!), 'a later line carries a later time');
    assert.deepEqual(
      lines.map((line) => [line.level, line.msg]),
      [
        ['info', 'first'],
        ['info', 'same millisecond or the next'],
        ['info', 'later'],
      ],
    );
  });
});
