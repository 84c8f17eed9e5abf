import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countLines, DroppedLines } from '../../../src/log/dropped-lines.js';

describe('dropped log lines', () => {
  it('counts complete lines only', () => {
    assert.equal(countLines(''), 0);
    assert.equal(countLines('{"a":1}'), 0);
    assert.equal(countLines('{"a":1}\n{"b":2}\n'), 2);
  });

  it('reports each run of drops once, with its last reason, and keeps the total', () => {
    const dropped = new DroppedLines();
    const reports: [number, string][] = [];
    const report = (lines: number, reason: string) => reports.push([lines, reason]);
    dropped.report(report);
    assert.deepEqual(reports, []);
    dropped.add('one\ntwo\n', 'the disk is full');
    dropped.add(3, 'the log file is not keeping up');
    dropped.report(report);
    dropped.report(report);
    dropped.add('four\n', 'the disk is full');
    dropped.report(report);
    assert.deepEqual(reports, [
      [5, 'the log file is not keeping up'],
      [1, 'the disk is full'],
    ]);
    assert.equal(dropped.total, 6);
    assert.equal(dropped.reason, 'the disk is full');
  });

  it('adds every dropped line to its counter (digestd_log_lines_dropped_total)', () => {
    let counted = 0;
    const dropped = new DroppedLines({ inc: (lines) => (counted += lines) });
    dropped.add('one\ntwo\n', 'the disk is full');
    dropped.add(0, 'stdout: EPIPE');
    dropped.add(3, 'the log file is not keeping up');
    assert.equal(counted, 5);
  });
});
