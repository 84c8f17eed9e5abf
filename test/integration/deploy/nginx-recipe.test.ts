import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, chmod, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { temporaryDirectory } from '../../harness/digestd.js';
import { request } from '../../harness/http.js';
import { docBlock } from '../../harness/readme.js';
import { sha256Hex } from '../../harness/sha256.js';
import { freePort, postgresForTest, serviceSkip, TEST_POSTGRES_URL } from '../../helpers/services.js';

/**
 * The local nginx recipe of docs/deploy.md, run as written: its start block (a certificate, two nodes with
 * their own data directories over one PostgreSQL table, Debian's nginx with the shipped
 * deploy/nginx.conf), then its try block (curl through nginx, then kill by the recorded PIDs).
 * Only the ports, the directory and the store's table come from the environment, through the
 * recipe's own variables; one worker per node keeps the run small.
 */

const run = promisify(execFile);
const repository = fileURLToPath(new URL('../../../', import.meta.url));
const NGINX = '/usr/sbin/nginx';

const nginxSkip = await serviceSkip(
  "Debian's nginx, openssl and curl",
  () => Promise.all([access(NGINX), run('openssl', ['version']), run('curl', ['--version'])]),
  'install nginx, openssl and curl (bash .ci/services does)',
);
const postgres = await postgresForTest(
  'nginx_recipe',
  'the recipe’s nodes share the test PostgreSQL (bash .ci/services starts it)',
);

/** Runs a block of the recipe with bash, failing on the first failing command. */
async function runBlock(marker: string, env: NodeJS.ProcessEnv): Promise<string> {
  const block = await docBlock('docs/deploy.md', `<!-- doc-test: ${marker} -->`);
  const { stdout } = await run('bash', ['-euc', block], { cwd: repository, env, timeout: 60_000 });
  return stdout;
}

/** The PIDs the recipe recorded in its directory: nginx's master and each node's primary. */
async function recordedPids(demo: string): Promise<Map<string, number>> {
  const pids = new Map<string, number>();
  for (const name of (await readdir(demo)).filter((file) => file.endsWith('.pid'))) {
    const pid = Number((await readFile(path.join(demo, name), 'utf8')).trim());
    if (pid > 0) pids.set(name, pid);
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The GETs of `digest` in a node's JSON log. */
async function getsIn(log: string, digest: string): Promise<number> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.includes('"msg":"request"') && line.includes('"method":"GET"'))
    .filter((line) => line.includes(`"url":"/messages/${digest}"`)).length;
}

describe('the nginx recipe of docs/deploy.md', { skip: nginxSkip ?? postgres.skip, timeout: 120_000 }, () => {
  it('runs as written: two nodes with their own data directories behind nginx, both serving a message posted once', async () => {
    const demo = await temporaryDirectory('digestd-nginx-recipe-');
    // nginx's workers run as nobody when the test is root; mkdtemp's 0700 would shut them out.
    await chmod(demo, 0o755);
    const [port, node1, node2] = [await freePort(), await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DEMO: demo,
      PORT: String(port),
      NODE1_PORT: String(node1),
      NODE2_PORT: String(node2),
      STORE: `${TEST_POSTGRES_URL}?table=${postgres.table}`,
      DIGESTD_WORKERS: '1',
    };
    try {
      await runBlock('nginx-start', env);
      const pids = await recordedPids(demo);
      assert.deepEqual([...pids.keys()].sort(), ['nginx.pid', 'node1.pid', 'node2.pid']);

      // Each node recorded where it listens in its own data directory, none overwrote the other's.
      for (const [n, nodePort] of [
        [1, node1],
        [2, node2],
      ] as const) {
        const listening = JSON.parse(
          await readFile(path.join(demo, `node${n}`, 'listening.json'), 'utf8'),
        ) as {
          pid: number;
          url: string;
        };
        assert.deepEqual(listening, { pid: pids.get(`node${n}.pid`), url: `http://127.0.0.1:${nodePort}` });
      }

      // A message posted once through nginx is read back through nginx from both nodes (round robin
      // over idle nodes): the store is shared, not each node's own.
      const ca = await readFile(path.join(demo, 'fullchain.pem'), 'utf8');
      const message = `through nginx ${process.pid} ${Date.now()}`;
      const digest = sha256Hex(message);
      const posted = await request(`https://127.0.0.1:${port}/messages`, {
        ca,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message }),
      });
      assert.equal(posted.status, 201, posted.body);
      assert.deepEqual(posted.json(), { digest });
      const servedBy = [0, 0];
      for (let attempt = 0; attempt < 20 && servedBy.some((count) => count === 0); attempt++) {
        const got = await request(`https://127.0.0.1:${port}/messages/${digest}`, { ca });
        assert.equal(got.status, 200, got.body);
        assert.deepEqual(got.json(), { message });
        await sleep(100);
        servedBy[0] = await getsIn(path.join(demo, 'node1.log'), digest);
        servedBy[1] = await getsIn(path.join(demo, 'node2.log'), digest);
      }
      assert.ok(
        servedBy[0]! > 0 && servedBy[1]! > 0,
        `GETs answered by node 1 and node 2: ${servedBy.join(', ')}`,
      );

      // curl through nginx, the POST and the GET of its digest, then the recipe's stop line.
      const tried = await runBlock('nginx-try', env);
      assert.equal(tried, `{"digest":"${sha256Hex('foo')}"}{"message":"foo"}`);
      for (let attempt = 0; attempt < 150 && [...pids.values()].some(alive); attempt++) await sleep(100);
      assert.deepEqual(
        [...pids].filter(([, pid]) => alive(pid)),
        [],
        'the try block’s kill ends nginx and both nodes',
      );
      for (const n of [1, 2]) {
        await assert.rejects(
          access(path.join(demo, `node${n}`, 'listening.json')),
          'a clean stop removes it',
        );
      }
    } finally {
      // Whatever the recipe started and did not end, by its recorded PID.
      for (const pid of (await recordedPids(demo).catch(() => new Map<string, number>())).values()) {
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
      await rm(demo, { recursive: true, force: true });
    }
  });
});
