import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { localMetricsText } from '../../src/metrics.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe("the README's metrics table", () => {
  it('names every digestd metric the registry exposes, and no other', async () => {
    const exposed = await localMetricsText();
    const defined = new Set([...exposed.matchAll(/^# TYPE (digestd_[a-z_]+) /gm)].map((match) => match[1]!));
    const table = readme.slice(
      readme.indexOf('| Metric '),
      readme.indexOf('\n\n', readme.indexOf('| Metric ')),
    );
    const listed = new Set([...table.matchAll(/`(digestd_[a-z_]+)`/g)].map((match) => match[1]!));
    assert.ok(defined.size > 10, `found ${defined.size} metrics`);
    assert.deepEqual([...listed].sort(), [...defined].sort());
  });
});
