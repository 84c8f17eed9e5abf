import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { redactConfig } from '../../src/config/redact.js';
import { InvalidConfig } from '../../src/errors.js';

describe('configuration', () => {
  it('has the documented defaults', () => {
    const config = loadConfig([], {});
    assert.equal(config.listen.port, 8443);
    assert.equal(config.listen.host, '::');
    assert.equal(config.data.dir, './data');
    assert.equal(config.tls.enabled, true);
    assert.equal(config.http.maxMessageBytes, 1024 * 1024);
    assert.equal(config.log.level, 'info');
    assert.ok(Object.isFrozen(config));
    for (const [group, values] of Object.entries(config)) assert.ok(Object.isFrozen(values), group);
  });

  it('reads environment variables, and flags win over them', () => {
    const env = { DIGESTD_PORT: '9000', DIGESTD_HOST: '127.0.0.1' };
    assert.equal(loadConfig([], env).listen.port, 9000);
    const config = loadConfig(['--port', '9100'], env);
    assert.equal(config.listen.port, 9100);
    assert.equal(config.listen.host, '127.0.0.1');
  });

  it('parses byte sizes with units', () => {
    assert.equal(loadConfig(['--max-message-size', '64KiB'], {}).http.maxMessageBytes, 65536);
    assert.equal(loadConfig(['--max-message-size', '2M'], {}).http.maxMessageBytes, 2 * 1024 * 1024);
  });

  it('--no-tls turns TLS off, over the environment', () => {
    assert.equal(loadConfig(['--no-tls'], { DIGESTD_TLS: 'true' }).tls.enabled, false);
    assert.equal(loadConfig([], { DIGESTD_TLS: 'no' }).tls.enabled, false);
  });

  it('reports every bad setting at once, by name', () => {
    assert.throws(
      () => loadConfig(['--port', '70000', '--log-level', 'loud'], { DIGESTD_MAX_MESSAGE_SIZE: '1 parsec' }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidConfig);
        assert.equal(error.problems.length, 3);
        assert.match(error.message, /--port: must be at most 65535/);
        assert.match(error.message, /--log-level/);
        assert.match(error.message, /DIGESTD_MAX_MESSAGE_SIZE/);
        return true;
      },
    );
  });

  it('requires --tls-cert and --tls-key together', () => {
    assert.throws(
      () => loadConfig(['--tls-cert', 'a.pem'], {}),
      (error: InvalidConfig) =>
        error.problems.includes('--tls-cert: a.pem does not exist') &&
        error.problems.includes(
          '--tls-key: required with --tls-cert (or give neither, and a local CA makes the certificate)',
        ),
    );
  });

  it('redacts nothing that is not secret', () => {
    assert.equal(redactConfig(loadConfig([], {})).listen.port, 8443);
  });
});

describe('configuration: connection protection', () => {
  it('has the documented defaults', () => {
    const config = loadConfig([], {});
    assert.equal(config.connection.headersTimeoutMs, 10_000);
    assert.equal(config.connection.requestTimeoutMs, 60_000);
    assert.equal(config.connection.keepAliveTimeoutMs, 72_000);
    assert.equal(config.connection.maxHeaderBytes, 16 * 1024);
    assert.equal(config.connection.maxUrlBytes, 8 * 1024);
    assert.equal(config.connection.maxConnections, 10_000);
  });

  it('reads flags and environment variables', () => {
    const config = loadConfig(['--headers-timeout', '2000', '--max-header-size', '32KiB'], {
      DIGESTD_MAX_CONNECTIONS: '0',
      DIGESTD_MAX_URL_LENGTH: '2K',
    });
    assert.equal(config.connection.headersTimeoutMs, 2000);
    assert.equal(config.connection.maxHeaderBytes, 32 * 1024);
    assert.equal(config.connection.maxConnections, 0);
    assert.equal(config.connection.maxUrlBytes, 2048);
  });

  it('refuses a header timeout longer than the request timeout, and zero timeouts', () => {
    assert.throws(
      () => loadConfig(['--headers-timeout', '5000', '--request-timeout', '1000'], {}),
      (error: InvalidConfig) =>
        error.problems.includes('--headers-timeout must not be longer than --request-timeout'),
    );
    assert.throws(
      () => loadConfig(['--keep-alive-timeout', '0'], {}),
      (error: InvalidConfig) => error.problems.some((problem) => problem.startsWith('--keep-alive-timeout')),
    );
  });

  it('takes a worker timeout of 0 (off) or at least a second, 10 s by default', () => {
    assert.equal(loadConfig([], {}).supervisor.workerTimeoutMs, 10_000);
    assert.equal(loadConfig(['--worker-timeout', '0'], {}).supervisor.workerTimeoutMs, 0);
    assert.equal(loadConfig([], { DIGESTD_WORKER_TIMEOUT: '2500' }).supervisor.workerTimeoutMs, 2500);
    assert.throws(
      () => loadConfig(['--worker-timeout', '300'], {}),
      (error: InvalidConfig) =>
        error.problems.some((problem) => problem.startsWith('--worker-timeout: 0 (off)')),
    );
  });
});
