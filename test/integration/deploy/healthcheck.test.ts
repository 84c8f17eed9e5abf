import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startServer } from '../../helpers/server.js';

const run = promisify(execFile);
const deployFile = (name: string) => fileURLToPath(new URL(`../../../deploy/${name}`, import.meta.url));

/** Runs the container health check with the given environment; resolves with its exit code. */
async function healthcheck(
  env: Record<string, string>,
  args: string[] = [],
): Promise<{ code: number; stderr: string }> {
  try {
    await run(process.execPath, [deployFile('healthcheck.mjs'), ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stderr: '' };
  } catch (error) {
    const failed = error as { code: number; stderr: string };
    return { code: failed.code, stderr: failed.stderr };
  }
}

describe('the container health check', () => {
  it('the health check finds a TLS server on its port from listening.json, whatever its own settings say', async () => {
    const server = await startServer({ args: ['--workers', '1'] });
    const record = JSON.parse(await readFile(path.join(server.dataDir, 'listening.json'), 'utf8')) as unknown;
    assert.deepEqual(record, {
      pid: server.process.pid,
      url: `https://127.0.0.1:${server.port}`,
      cert: path.join(server.dataDir, 'tls', 'cert.pem'),
      ca: path.join(server.dataDir, 'tls', 'ca.pem'),
    });
    // The check's own port and TLS settings are not the server's: it follows the file.
    const env = { DIGESTD_DATA_DIR: server.dataDir, DIGESTD_PORT: '1', DIGESTD_TLS: 'false' };
    try {
      assert.deepEqual(await healthcheck(env), { code: 0, stderr: '' });
    } finally {
      assert.equal(await server.stop(), 0);
    }
    const stopped = await healthcheck(env);
    assert.equal(stopped.code, 1);
    assert.equal(
      stopped.stderr,
      `healthcheck: digestd is not listening yet (no listening.json in ${server.dataDir})\n`,
    );
  });

  it('the health check probes a plain-HTTP server on the IPv6 wildcard over loopback (--data-dir)', async () => {
    const server = await startServer({ args: ['--workers', '1', '--no-tls', '--host', '::'] });
    try {
      const record = JSON.parse(
        await readFile(path.join(server.dataDir, 'listening.json'), 'utf8'),
      ) as unknown;
      assert.deepEqual(record, { pid: server.process.pid, url: `http://[::]:${server.port}` });
      assert.deepEqual(await healthcheck({}, ['--data-dir', server.dataDir]), { code: 0, stderr: '' });
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });
});
