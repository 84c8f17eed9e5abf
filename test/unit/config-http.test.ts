import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { settingsHelp } from '../../src/config/help.js';
import { loadConfig } from '../../src/config/load.js';
import { redactConfig } from '../../src/config/redact.js';
import { InvalidConfig } from '../../src/errors.js';

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof InvalidConfig);
    return error.problems;
  }
  assert.fail('expected InvalidConfig');
}

describe('configuration of batches, metrics and protection', () => {
  it('has the documented defaults', () => {
    const config = loadConfig([], {});
    assert.equal(config.http.batchMax, 1000);
    assert.equal(config.http.maxAnswerBytes, 16 * 1024 * 1024);
    assert.equal(loadConfig(['--max-answer-size', '4MiB'], {}).http.maxAnswerBytes, 4 * 1024 * 1024);
    assert.equal(loadConfig([], { DIGESTD_MAX_ANSWER_SIZE: '2M' }).http.maxAnswerBytes, 2 * 1024 * 1024);
    assert.equal(config.metrics.port, undefined);
    assert.equal(config.metrics.host, '127.0.0.1');
    assert.equal(config.protection.writeTokens, undefined);
    assert.equal(config.protection.writeTokenFile, undefined);
    assert.equal(config.protection.rateLimit, undefined);
    assert.equal(config.protection.maxEventLoopDelayMs, 1000);
    assert.equal(config.protection.maxHeapUsedBytes, 0);
    assert.equal(config.protection.maxRssBytes, 0);
  });

  it('takes --write-token repeatedly, or comma-separated from the environment', () => {
    assert.deepEqual(
      loadConfig(['--write-token', 'one', '--write-token', 'two'], {}).protection.writeTokens,
      ['one', 'two'],
    );
    assert.deepEqual(loadConfig([], { DIGESTD_WRITE_TOKEN: 'one, two' }).protection.writeTokens, [
      'one',
      'two',
    ]);
    assert.deepEqual(
      loadConfig(['--write-token', 'flag'], { DIGESTD_WRITE_TOKEN: 'env' }).protection.writeTokens,
      ['flag'],
    );
  });

  it('redacts write tokens', () => {
    const shown = redactConfig(loadConfig(['--write-token', 'very-secret'], {}));
    assert.equal(shown.protection.writeTokens, '[redacted]');
    assert.doesNotMatch(JSON.stringify(shown), /very-secret/);
  });

  it('parses rates per second, minute and hour', () => {
    assert.deepEqual(loadConfig(['--rate-limit', '100/s'], {}).protection.rateLimit, {
      max: 100,
      windowMs: 1000,
    });
    assert.deepEqual(loadConfig(['--rate-limit', '600/min'], {}).protection.rateLimit, {
      max: 600,
      windowMs: 60_000,
    });
    assert.deepEqual(loadConfig([], { DIGESTD_RATE_LIMIT: '10000 / h' }).protection.rateLimit, {
      max: 10000,
      windowMs: 3_600_000,
    });
  });

  it('reports bad values by name', () => {
    const problems = problemsOf(() =>
      loadConfig(
        ['--rate-limit', 'fast', '--batch-max', '0', '--metrics-port', '99999', '--max-rss', 'lots'],
        {},
      ),
    );
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems.join('\n'), /--rate-limit: expected a rate such as 100\/s/);
    assert.match(problems.join('\n'), /--batch-max: must be at least 1/);
    assert.match(problems.join('\n'), /--metrics-port: must be at most 65535/);
    assert.match(problems.join('\n'), /--max-rss: expected a byte count/);
    assert.match(problemsOf(() => loadConfig(['--rate-limit', '0/s'], {}))[0] ?? '', /--rate-limit/);
  });

  it('refuses a metrics port equal to the public port', () => {
    assert.match(
      problemsOf(() => loadConfig(['--port', '9000', '--metrics-port', '9000'], {}))[0] ?? '',
      /--metrics-port: must differ from --port/,
    );
  });

  it('lists the new settings in --help', () => {
    const help = settingsHelp();
    for (const flag of [
      '--batch-max',
      '--metrics-port',
      '--metrics-host',
      '--write-token TOKEN',
      '--write-token-file FILE',
      '--rate-limit N/s',
      '--max-event-loop-delay',
      '--max-heap-used',
      '--max-rss',
    ]) {
      assert.ok(help.includes(flag), flag);
    }
  });
});
