import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../../src/log/logger.js';
import { WorkerOutput } from '../../../src/log/worker-output.js';

/** A logger writing into an array of parsed lines. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  return { logger, lines };
}

describe("a worker's stdout and stderr", () => {
  it('become JSON log lines, an error printed with its stack and fields as one entry', async () => {
    const { logger, lines } = capture();
    const output = new WorkerOutput({ logger });
    const stderr = new PassThrough();
    output.read(stderr, { workerPid: 42, stream: 'stderr' });
    // What LMDB's fprintf and lmdb-js's console.error(error) write when a commit finds no room.
    stderr.write('mdb_page_spill flushing error 28\n');
    stderr.write(
      'Error: No space left on device\n    at Function.<anonymous> (lmdb/write.js:516:7) {\n  code: 28\n}\n',
    );
    stderr.end('no newline at the end');
    await sleep(20);
    output.close();
    assert.deepEqual(
      lines.map((line) => [line.level, line.workerPid, line.stream, line.output]),
      [
        ['warn', 42, 'stderr', 'mdb_page_spill flushing error 28'],
        [
          'warn',
          42,
          'stderr',
          'Error: No space left on device\n    at Function.<anonymous> (lmdb/write.js:516:7) {\n  code: 28\n}',
        ],
        ['warn', 42, 'stderr', 'no newline at the end'],
      ],
    );
  });

  it('logs at most so many entries per interval, then how many were left out', async () => {
    const { logger, lines } = capture();
    const output = new WorkerOutput({ logger, entriesPerInterval: 3, intervalMs: 50 });
    const stdout = new PassThrough();
    output.read(stdout, { workerPid: 7, stream: 'stdout' });
    stdout.write(Array.from({ length: 10 }, (_, index) => `line ${index}\n`).join(''));
    await sleep(120);
    stdout.write('after the interval\n');
    await sleep(20);
    output.close();
    assert.deepEqual(
      lines.map((line) => line.output ?? line.leftOut),
      ['line 0', 'line 1', 'line 2', 7, 'after the interval'],
    );
  });
});
