import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { temporaryDirectory } from '../../helpers/server.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Whether a process of this pid is alive (and not a zombie). */
async function alive(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return status !== '' && !/^State:\s+Z/m.test(status);
}

/** The pids of the process tree under `pid` (children, their children...). */
async function descendants(pid: number): Promise<number[]> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => ''))
    .split(' ')
    .filter((word) => word !== '')
    .map(Number);
  const below = await Promise.all(children.map((child) => descendants(child)));
  return [...children, ...below.flat()];
}

describe('npm start', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`stops digestd and its workers when npm itself gets ${signal}`, async () => {
      const dataDir = await temporaryDirectory();
      const npm = spawn(
        'npm',
        [
          'start',
          '--',
          '--no-tls',
          '--host',
          '127.0.0.1',
          '--port',
          '0',
          '--workers',
          '2',
          '--data-dir',
          dataDir,
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      npm.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      for (let waited = 0; !output.includes('digestd serving') && waited < 300; waited++) await sleep(100);
      assert.match(output, /digestd serving/);
      const tree = await descendants(npm.pid!);
      assert.ok(tree.length >= 3, `digestd's primary and two workers run under npm: ${tree.join(' ')}`);
      npm.kill(signal);
      let left = tree;
      for (let waited = 0; left.length > 0 && waited < 150; waited++) {
        await sleep(100);
        left = (await Promise.all(tree.map(async (pid) => ((await alive(pid)) ? pid : 0)))).filter(
          (pid) => pid,
        );
      }
      for (const pid of left) process.kill(pid, 'SIGKILL');
      assert.deepEqual(left, [], 'nothing is left serving');
      assert.match(output, /"msg":"stopped"/, 'digestd drained before it exited');
    });
  }
});
