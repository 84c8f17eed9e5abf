import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCrashConsistency } from '../../../scripts/crash-consistency.js';

describe('crash consistency', () => {
  it(
    'loses no acknowledged message when the process tree is SIGKILLed under full write load',
    { timeout: 180_000 },
    async () => {
      const lines: string[] = [];
      const summary = await runCrashConsistency({
        rounds: 2,
        connections: 16,
        minAcknowledged: 50,
        killWindowMs: 1000,
        serverArgs: [],
        log: (line) => lines.push(line),
      });
      assert.equal(summary.rounds.length, 2);
      for (const round of summary.rounds) {
        assert.ok(round.acknowledged >= 50, `round ${round.round} acknowledged ${round.acknowledged}`);
        assert.ok(round.processesKilled >= 1);
        assert.equal(round.lost, 0, lines.join('\n'));
      }
      assert.equal(summary.finalCheckLost, 0);
      assert.equal(summary.wrongDigests, 0);
    },
  );
});
