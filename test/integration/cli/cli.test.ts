import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DIGESTD_BIN, startServer } from '../../helpers/server.js';

const run = promisify(execFile);
const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

async function digestd(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [DIGESTD_BIN, ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('digestd command line', () => {
  it('--version prints the package version', async () => {
    const result = await digestd(['--version']);
    assert.equal(result.code, 0);
    assert.equal(result.stdout.trim(), version);
  });

  it('--help lists serve and every setting with its environment variable', async () => {
    const result = await digestd(['--help']);
    assert.equal(result.code, 0);
    for (const text of ['serve', '--port', 'DIGESTD_PORT', '--data-dir', '--no-tls', '--max-message-bytes']) {
      assert.ok(result.stdout.includes(text), `help mentions ${text}`);
    }
  });

  it('serve --help prints the help without starting', async () => {
    const result = await digestd(['serve', '--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /Usage/);
  });

  it('an unknown command exits 2', async () => {
    const result = await digestd(['frobnicate']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command "frobnicate"/);
  });

  it('invalid settings stop start-up with exit 2, naming each bad setting', async () => {
    const result = await digestd(['serve', '--port', 'eighty', '--log-level', 'loud'], {
      DIGESTD_MAX_MESSAGE_BYTES: '-1',
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--port/);
    assert.match(result.stderr, /--log-level/);
    assert.match(result.stderr, /DIGESTD_MAX_MESSAGE_BYTES/);
  });

  it('an unknown flag exits 2', async () => {
    const result = await digestd(['serve', '--colour']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /colour/);
  });

  it('a port already in use makes serve exit non-zero with the reason', async () => {
    const first = await startServer();
    try {
      const result = await digestd([
        'serve',
        '--host',
        '127.0.0.1',
        '--port',
        String(first.port),
        '--data-dir',
        first.dataDir + '-second',
      ]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /EADDRINUSE/);
    } finally {
      await first.stop();
    }
  });

  it('environment variables configure serve', async () => {
    const server = await startServer({ env: { DIGESTD_TLS: 'false' } });
    try {
      assert.match(server.url, /^http:/);
    } finally {
      await server.stop();
    }
  });
});
