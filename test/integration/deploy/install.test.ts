import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { temporaryDirectory } from '../../harness/digestd.js';
import { request } from '../../harness/http.js';
import { readmeBlock } from '../../harness/readme.js';
import { serviceSkip } from '../../helpers/services.js';

/**
 * The README's systemd install, run as written: its shell block, copied out of the README so that
 * the two cannot drift, runs from this checkout in a private mount namespace whose /opt is an empty
 * tmpfs (the machine's own /opt is untouched), then the unit's ExecStart program serves from what
 * it installed. The unit's sandbox and settings are tested in systemd.test.ts.
 */

const run = promisify(execFile);
const repository = fileURLToPath(new URL('../../../', import.meta.url));

const skip = await serviceSkip(
  'a private mount namespace (unshare as root)',
  () => run('unshare', ['--mount', '--propagation', 'private', 'true']),
  'run the tests as root (CI does)',
);

describe("the README's systemd install", { skip, timeout: 600_000 }, () => {
  it('installs only what runs into /opt/digestd, and the unit’s ExecStart serves from it', async () => {
    const install = await readmeBlock('CI runs this block as\nwritten:');
    assert.match(install, /npm pack/);
    const unit = await readFile(path.join(repository, 'deploy/digestd.service'), 'utf8');
    const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1];
    assert.ok(execStart?.startsWith('/usr/bin/node /opt/digestd/bin/digestd serve'), execStart);

    const dataDir = await temporaryDirectory('digestd-install-');
    const script = [
      'set -eu',
      'mount -t tmpfs tmpfs /opt',
      install,
      'rm -f digestd-*.tgz',
      // What was installed, for the test to check, then the unit's program on a free port.
      'echo "installed: $(ls -A /opt/digestd | tr "\\n" " ")"',
      'echo "size: $(du -sm /opt/digestd | cut -f1)"',
      'echo "dev: $(ls /opt/digestd/node_modules | grep -cx -e typescript -e eslint -e tsx -e c8 || true)"',
      'echo "sources: $(find /opt/digestd -path /opt/digestd/node_modules -prune -o -name "*.ts" -print | wc -l)"',
      `exec /usr/bin/node /opt/digestd/bin/digestd serve --host 127.0.0.1 --port 0 --data-dir ${dataDir}`,
    ].join('\n');
    const child = spawn('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script], {
      cwd: repository,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const lines: string[] = [];
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      const address = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          lines.push(line);
          const listening = /"address":"(https:\/\/[^"]+)".*"msg":"digestd serving /.exec(line);
          if (listening?.[1]) resolve(listening[1]);
        });
        void exited.then((code) => reject(new Error(`exited ${code}:\n${lines.join('\n')}\n${stderr}`)));
      });
      const installed = lines.find((line) => line.startsWith('installed: '));
      assert.equal(
        installed?.trim(),
        'installed: README.md bin dist node_modules package-lock.json package.json',
        'no .git, sources, tests or data',
      );
      assert.ok(lines.includes('sources: 0'), 'no TypeScript sources outside node_modules');
      const size = Number(lines.find((line) => line.startsWith('size: '))?.slice(6));
      assert.ok(size > 0 && size < 150, `${size} MB installed`);
      assert.ok(lines.includes('dev: 0'), 'production dependencies only: no compiler, linter or test tools');

      const ca = await readFile(path.join(dataDir, 'tls', 'ca.pem'), 'utf8');
      const health = await request(`${address}/healthz`, { ca });
      assert.equal(health.status, 200);
      const posted = await request(`${address}/messages`, {
        ca,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'installed' }),
      });
      assert.equal(posted.status, 201);
    } finally {
      child.kill('SIGTERM');
      await exited;
      await rm(dataDir, { recursive: true, force: true });
      await rm(path.join(repository, 'digestd-0.1.0.tgz'), { force: true });
    }
  });
});
