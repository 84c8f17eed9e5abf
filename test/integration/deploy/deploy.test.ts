import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startServer } from '../../helpers/server.js';

const run = promisify(execFile);
const deployFile = (name: string) => fileURLToPath(new URL(`../../../deploy/${name}`, import.meta.url));

/** Runs the container health check with the given environment; resolves with its exit code. */
async function healthcheck(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  try {
    await run(process.execPath, [deployFile('healthcheck.mjs')], { env: { ...process.env, ...env } });
    return { code: 0, stderr: '' };
  } catch (error) {
    const failed = error as { code: number; stderr: string };
    return { code: failed.code, stderr: failed.stderr };
  }
}

describe('deploy files', () => {
  it('the systemd unit passes systemd-analyze verify and has the promised settings', async (context) => {
    const unitPath = deployFile('digestd.service');
    try {
      await run('systemd-analyze', ['--version']);
    } catch {
      context.skip('systemd-analyze is not installed here');
      return;
    }
    // verify exits 0 even for unknown keys and bad values; it reports them on stderr.
    const { stdout, stderr } = await run('systemd-analyze', ['verify', unitPath]);
    assert.equal(`${stdout}${stderr}`.trim(), '');
    const unit = await readFile(unitPath, 'utf8');
    for (const line of [
      'Restart=always',
      'User=digestd',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/digestd',
      'KillMode=mixed',
      'ExecReload=/bin/kill -HUP $MAINPID',
    ]) {
      assert.ok(unit.split('\n').includes(line), `the unit has ${line}`);
    }
    assert.match(unit, /^ExecStart=.* serve --data-dir \/var\/lib\/digestd/m);
  });

  it('the Docker health check passes against a running server and fails once it stopped', async () => {
    const server = await startServer({ args: ['--workers', '1'] });
    const env = {
      DIGESTD_HOST: '0.0.0.0',
      DIGESTD_PORT: String(server.port),
      DIGESTD_DATA_DIR: server.dataDir,
    };
    try {
      assert.deepEqual(await healthcheck(env), { code: 0, stderr: '' });
    } finally {
      assert.equal(await server.stop(), 0);
    }
    const stopped = await healthcheck(env);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /ECONNREFUSED/);
  });
});
