import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { settingsHelp } from '../../src/config/help.js';
import { loadConfig } from '../../src/config/load.js';
import { SCHEMA, type Command } from '../../src/config/schema.js';
import { InvalidConfig } from '../../src/errors.js';

/**
 * Every flag and environment variable digestd has ever documented, per subcommand. Scripts,
 * unit files and container environments name them, so none may change when the schema is
 * reorganised; a new setting is added here on purpose, and a renamed one keeps its former name
 * working (formerFlag in the schema, tested below).
 */
const NAMES: Record<Command, readonly (readonly [flag: string, env: string])[]> = {
  serve: [
    ['--port', 'DIGESTD_PORT'],
    ['--host', 'DIGESTD_HOST'],
    ['--data-dir', 'DIGESTD_DATA_DIR'],
    ['--tls', 'DIGESTD_TLS'],
    ['--tls-cert', 'DIGESTD_TLS_CERT'],
    ['--tls-key', 'DIGESTD_TLS_KEY'],
    ['--tls-san', 'DIGESTD_TLS_SAN'],
    ['--acme-domain', 'DIGESTD_ACME_DOMAIN'],
    ['--acme-email', 'DIGESTD_ACME_EMAIL'],
    ['--acme-directory', 'DIGESTD_ACME_DIRECTORY'],
    ['--acme-ca-cert', 'DIGESTD_ACME_CA_CERT'],
    ['--acme-challenge', 'DIGESTD_ACME_CHALLENGE'],
    ['--acme-http-port', 'DIGESTD_ACME_HTTP_PORT'],
    ['--acme-renew-before', 'DIGESTD_ACME_RENEW_BEFORE'],
    ['--max-message-bytes', 'DIGESTD_MAX_MESSAGE_BYTES'],
    ['--log-level', 'DIGESTD_LOG_LEVEL'],
    ['--log-format', 'DIGESTD_LOG_FORMAT'],
    ['--store', 'DIGESTD_STORE'],
    ['--store-wait', 'DIGESTD_STORE_WAIT'],
    ['--store-timeout', 'DIGESTD_STORE_TIMEOUT'],
    ['--disk-reserve', 'DIGESTD_DISK_RESERVE'],
    ['--cache-bytes', 'DIGESTD_CACHE_BYTES'],
    ['--redis-wait-replicas', 'DIGESTD_REDIS_WAIT_REPLICAS'],
    ['--max-answer-bytes', 'DIGESTD_MAX_ANSWER_BYTES'],
    ['--batch-max', 'DIGESTD_BATCH_MAX'],
    ['--metrics-port', 'DIGESTD_METRICS_PORT'],
    ['--metrics-host', 'DIGESTD_METRICS_HOST'],
    ['--write-token', 'DIGESTD_WRITE_TOKEN'],
    ['--write-token-file', 'DIGESTD_WRITE_TOKEN_FILE'],
    ['--rate-limit', 'DIGESTD_RATE_LIMIT'],
    ['--max-event-loop-delay', 'DIGESTD_MAX_EVENT_LOOP_DELAY'],
    ['--max-heap-used', 'DIGESTD_MAX_HEAP_USED'],
    ['--max-rss', 'DIGESTD_MAX_RSS'],
    ['--workers', 'DIGESTD_WORKERS'],
    ['--shutdown-timeout', 'DIGESTD_SHUTDOWN_TIMEOUT'],
    ['--worker-timeout', 'DIGESTD_WORKER_TIMEOUT'],
    ['--log-file', 'DIGESTD_LOG_FILE'],
    ['--log-max-size', 'DIGESTD_LOG_MAX_SIZE'],
    ['--log-max-files', 'DIGESTD_LOG_MAX_FILES'],
    ['--headers-timeout', 'DIGESTD_HEADERS_TIMEOUT'],
    ['--request-timeout', 'DIGESTD_REQUEST_TIMEOUT'],
    ['--keep-alive-timeout', 'DIGESTD_KEEP_ALIVE_TIMEOUT'],
    ['--max-header-bytes', 'DIGESTD_MAX_HEADER_BYTES'],
    ['--max-url-bytes', 'DIGESTD_MAX_URL_BYTES'],
    ['--max-connections', 'DIGESTD_MAX_CONNECTIONS'],
    ['--trust-proxy', 'DIGESTD_TRUST_PROXY'],
  ],
  migrate: [
    ['--from', 'DIGESTD_MIGRATE_FROM'],
    ['--to', 'DIGESTD_MIGRATE_TO'],
    ['--store-timeout', 'DIGESTD_STORE_TIMEOUT'],
    ['--redis-wait-replicas', 'DIGESTD_REDIS_WAIT_REPLICAS'],
  ],
  verify: [
    ['--data-dir', 'DIGESTD_DATA_DIR'],
    ['--store', 'DIGESTD_STORE'],
    ['--store-timeout', 'DIGESTD_STORE_TIMEOUT'],
    ['--backup', 'DIGESTD_VERIFY_BACKUP'],
  ],
  backup: [
    ['--data-dir', 'DIGESTD_DATA_DIR'],
    ['--store', 'DIGESTD_STORE'],
    ['--store-timeout', 'DIGESTD_STORE_TIMEOUT'],
    ['--to', 'DIGESTD_BACKUP_TO'],
  ],
  restore: [
    ['--from', 'DIGESTD_RESTORE_FROM'],
    ['--to', 'DIGESTD_RESTORE_TO'],
    ['--store-timeout', 'DIGESTD_STORE_TIMEOUT'],
    ['--redis-wait-replicas', 'DIGESTD_REDIS_WAIT_REPLICAS'],
  ],
};

/** The [flag, env] pairs a subcommand's --help lists, and which of them are switches (--x, --no-x). */
function listed(command: Command): { names: [string, string][]; switches: Set<string> } {
  const names: [string, string][] = [];
  const switches = new Set<string>();
  // Unwrapped: one row a setting.
  for (const line of settingsHelp(command, Number.POSITIVE_INFINITY).split('\n')) {
    const match = /^ {2}(--[a-z-]+)(, --no-[a-z-]+)?\s.*\[env ([A-Z_]+)\]$/.exec(line);
    assert.ok(match, `a --help row without a flag and an environment variable: ${line}`);
    names.push([match[1]!, match[3]!]);
    if (match[2] !== undefined) switches.add(match[1]!);
  }
  return { names, switches };
}

const sorted = (pairs: readonly (readonly [string, string])[]) =>
  [...pairs].map(([flag, env]) => `${flag} ${env}`).sort();

/** What loading gives: the configuration, or its problems with each setting's source left out. */
function outcome(run: () => unknown, sources: readonly string[]): unknown {
  try {
    return { config: run() };
  } catch (error) {
    assert.ok(error instanceof InvalidConfig, String(error));
    return {
      problems: error.problems.map((problem) =>
        sources.reduce((text, source) => text.replaceAll(source, '<setting>'), problem),
      ),
    };
  }
}

describe('setting names', () => {
  for (const command of ['serve', 'migrate', 'verify', 'backup', 'restore'] as const) {
    it(`${command} --help lists exactly the flags and environment variables it always had`, () => {
      assert.deepEqual(sorted(listed(command).names), sorted(NAMES[command]));
    });

    it(`${command} reads each environment variable as the flag it pairs with`, () => {
      const { names, switches } = listed(command);
      // What migrate requires, so that the setting under test decides the outcome.
      const required: Record<string, string> =
        {
          migrate: { DIGESTD_MIGRATE_FROM: 'lmdb:/from', DIGESTD_MIGRATE_TO: 'lmdb:/to' },
          backup: { DIGESTD_BACKUP_TO: '/backup' },
          restore: { DIGESTD_RESTORE_FROM: '/backup', DIGESTD_RESTORE_TO: 'lmdb:/to' },
        }[command as string] ?? {};
      const defaults = outcome(() => loadConfig([], required, command), []);
      for (const [flag, env] of names) {
        const base = Object.fromEntries(Object.entries(required).filter(([name]) => name !== env));
        // A value that differs from every default: a flag or variable that is not read shows.
        const fromFlag = switches.has(flag) ? [`--no-${flag.slice(2)}`] : [flag, '3'];
        const sources = [fromFlag[0]!, env, flag];
        const byFlag = outcome(() => loadConfig(fromFlag, base, command), sources);
        const byEnv = outcome(
          () => loadConfig([], { ...base, [env]: switches.has(flag) ? 'false' : '3' }, command),
          sources,
        );
        assert.deepEqual(byEnv, byFlag, `${flag} and ${env}`);
        assert.notDeepEqual(byFlag, defaults, `${flag} changes nothing`);
      }
    });
  }
});

describe('setting keys', () => {
  it('name the unit of their value', () => {
    const units = [
      [/milliseconds|\bms\b/i, 'Ms'],
      [/\bseconds\b/i, 'Seconds'],
      [/\bdays\b/i, 'Days'],
    ] as const;
    for (const [group, { settings }] of Object.entries(SCHEMA)) {
      for (const [key, spec] of Object.entries(settings as Record<string, { kind: string; help: string }>)) {
        const name = `${group}.${key}`;
        if (spec.kind === 'bytes') assert.ok(key.endsWith('Bytes'), `${name} holds bytes`);
        for (const [said, suffix] of units) {
          if (said.test(spec.help)) assert.ok(key.endsWith(suffix), `${name}: ${spec.help}`);
        }
      }
    }
  });
});

describe('former setting names', () => {
  it('reads --max-event-loop-delay-ms and its variable as --max-event-loop-delay, the current name winning', () => {
    const delay = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
      loadConfig(argv, env).protection.maxEventLoopDelayMs;
    assert.equal(delay(['--max-event-loop-delay-ms', '7']), 7);
    assert.equal(delay([], { DIGESTD_MAX_EVENT_LOOP_DELAY_MS: '8' }), 8);
    assert.equal(delay(['--max-event-loop-delay-ms', '7', '--max-event-loop-delay', '9']), 9);
    assert.equal(delay([], { DIGESTD_MAX_EVENT_LOOP_DELAY_MS: '8', DIGESTD_MAX_EVENT_LOOP_DELAY: '9' }), 9);
    assert.doesNotMatch(settingsHelp('serve'), /delay-ms/);
  });

  it('no flag names the unit of its time: the key does, and --help shows it', () => {
    for (const command of ['serve', 'migrate', 'verify'] as const) {
      for (const [flag] of listed(command).names) assert.doesNotMatch(flag, /-(ms|seconds|days)$/, flag);
    }
  });
});
