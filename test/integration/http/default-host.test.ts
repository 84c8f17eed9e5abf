import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { localCaPaths } from '../../../src/http/tls/local-ca.js';
import { DIGESTD_BIN, temporaryDirectory } from '../../helpers/server.js';

const run = promisify(execFile);

describe('the default listener', () => {
  it('serves IPv6 and IPv4 over TLS when no --host is given, verified by curl against the local CA', async () => {
    const dataDir = await temporaryDirectory();
    const env = { ...process.env };
    delete env.DIGESTD_HOST;
    const child = spawn(
      process.execPath,
      [DIGESTD_BIN, 'serve', '--port', '0', '--workers', '1', '--data-dir', dataDir],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const address = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('digestd did not listen within 30 s')), 30_000);
        child.once('exit', (code) => reject(new Error(`digestd exited with ${code}`)));
        createInterface({ input: child.stdout }).on('line', (line) => {
          const entry = JSON.parse(line) as { msg?: string; address?: string };
          if (String(entry.msg).startsWith('digestd serving') && entry.address !== undefined) {
            clearTimeout(timer);
            resolve(entry.address);
          }
        });
      });
      const port = new URL(address).port;
      assert.equal(address, `https://[::]:${port}`);
      const { caCert } = localCaPaths(dataDir);
      for (const host of ['[::1]', '127.0.0.1']) {
        const { stdout } = await run('curl', [
          '-sS',
          '--cacert',
          caCert,
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          `https://${host}:${port}/healthz`,
        ]);
        assert.equal(stdout, '200', `https://${host}:${port}`);
      }
    } finally {
      child.kill('SIGTERM');
    }
  });
});
