import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DIGESTD_BIN, request, startServer, temporaryDirectory } from '../../helpers/server.js';

const json = { 'content-type': 'application/json' };

describe('security headers', () => {
  it('sends Strict-Transport-Security over TLS', async () => {
    const server = await startServer();
    try {
      for (const url of [`${server.url}/healthz`, `${server.url}/messages/nope`]) {
        const response = await request(url, { ca: server.ca });
        assert.equal(response.headers['strict-transport-security'], 'max-age=31536000');
        assert.equal(response.headers['x-content-type-options'], 'nosniff');
      }
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });
});

describe('write tokens', () => {
  it('reads tokens from --write-token and --write-token-file in digestd serve', async () => {
    const directory = await temporaryDirectory();
    const tokenFile = path.join(directory, 'tokens');
    await writeFile(tokenFile, '# write tokens\nfrom-the-file-123\n\n  second-from-file  \n');
    const server = await startServer({
      args: ['--no-tls', '--write-token', 'from-the-flag-456', '--write-token-file', tokenFile],
    });
    try {
      const attempt = (authorization?: string) =>
        request(`${server.url}/messages`, {
          method: 'POST',
          headers: authorization === undefined ? json : { ...json, authorization },
          body: JSON.stringify({ message: 'served' }),
        });
      assert.equal((await attempt()).status, 401);
      assert.equal((await attempt('Bearer from-the-flag-456')).status, 201);
      assert.equal((await attempt('Bearer from-the-file-123')).status, 201);
      assert.equal((await attempt('Bearer second-from-file')).status, 201);
      assert.equal((await attempt('Bearer # write tokens')).status, 401);
      assert.doesNotMatch(JSON.stringify(server.logs), /from-the-flag-456/, 'tokens are not logged');
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  it('stops digestd serve with exit 2 when the token file is missing', async () => {
    const directory = await temporaryDirectory();
    const result = spawnSync(
      process.execPath,
      [
        DIGESTD_BIN,
        'serve',
        '--no-tls',
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--data-dir',
        directory,
        '--write-token-file',
        path.join(directory, 'missing'),
      ],
      { encoding: 'utf8', timeout: 15_000 },
    );
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /--write-token-file: cannot read/);
  });
});
