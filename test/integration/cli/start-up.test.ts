import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify, stripVTControlCharacters } from 'node:util';
import { freePort } from '../../harness/free-port.js';
import { DIGESTD_BIN, temporaryDirectory } from '../../helpers/server.js';
import { postgresAvailable, serviceSkip } from '../../helpers/services.js';

const run = promisify(execFile);

/** Runs `digestd serve ...args` to its exit, through `wrapper` when given (e.g. setpriv). */
async function serveToExit(args: readonly string[], wrapper: readonly string[] = [], timeout = 60_000) {
  const [command, ...rest] = [...wrapper, process.execPath, DIGESTD_BIN, 'serve', ...args];
  try {
    const { stdout, stderr } = await run(command!, rest, { timeout });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The log's JSON lines. */
const jsonLines = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);

/** A permanent start-up failure: exit 2, one line on stderr, no stack, no worker, no CA made. */
async function assertRefusedOnce(
  result: { code: number; stdout: string; stderr: string },
  dataDir: string,
  line: RegExp,
) {
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stderr.split('\n').length, 2, `one line: ${result.stderr}`);
  assert.match(result.stderr, line);
  assert.ok(!/\n\s+at /.test(result.stdout + result.stderr), 'no stack trace');
  const log = jsonLines(result.stdout);
  assert.deepEqual(
    log.filter((entry) => entry.msg === 'worker started'),
    [],
    'no worker started',
  );
  await assert.rejects(stat(path.join(dataDir, 'tls')), { code: 'ENOENT' }, 'no CA made first');
}

describe('start-up failures', () => {
  it('a PostgreSQL that refuses the user exits 2 at once with one line naming --store', async (t) => {
    const skip = await serviceSkip(
      'PostgreSQL',
      () => postgresAvailable(),
      'start PostgreSQL on 127.0.0.1:5432',
    );
    if (skip !== undefined) return t.skip(skip);
    const dataDir = await temporaryDirectory();
    // pg_hba trusts loopback, so the refusal is the role's: it does not exist.
    const store = 'postgres://digestd_no_such_role@127.0.0.1:5432/test';
    const result = await serveToExit(['--port', '0', '--data-dir', dataDir, '--store', store]);
    await assertRefusedOnce(
      result,
      dataDir,
      /^digestd: --store: postgres:\/\/digestd_no_such_role@127\.0\.0\.1:5432\/test refused digestd: role "digestd_no_such_role" does not exist; check the user, the password and the database in the URL/,
    );
  });

  it('a data directory this user cannot write exits 2 at once with one line naming --data-dir', async (t) => {
    // root ignores permissions: the child runs as nobody.
    const setpriv = await run('setpriv', ['--version']).catch(() => undefined);
    if (setpriv === undefined || process.getuid?.() !== 0) {
      return t.skip('needs root and setpriv (util-linux) to run digestd as nobody');
    }
    const parent = await temporaryDirectory();
    await chmod(parent, 0o755);
    const dataDir = path.join(parent, 'data');
    await run('mkdir', ['-m', '755', dataDir]);
    const result = await serveToExit(
      ['--port', '0', '--data-dir', dataDir],
      ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'],
    );
    await assertRefusedOnce(
      result,
      dataDir,
      new RegExp(`^digestd: --data-dir: cannot use ${dataDir}: .*[Pp]ermission denied.*; give a directory`),
    );
  });

  it('a store nobody listens on is tried again with a line each time, then exits 1', async () => {
    const dataDir = await temporaryDirectory();
    const port = await freePort();
    const store = `postgres://postgres@127.0.0.1:${port}/test`;
    const started = Date.now();
    const result = await serveToExit([
      ...['--port', '0', '--data-dir', dataDir, '--store', store, '--store-wait', '3'],
    ]);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(
      result.stderr,
      `digestd: --store: ${store} could not be reached within 3 s (--store-wait): connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
    const retries = jsonLines(result.stdout).filter((entry) => entry.level === 'warn');
    assert.ok(retries.length >= 2, `a line per retry: ${retries.length}`);
    for (const entry of retries) {
      assert.match(String(entry.msg), /cannot be reached yet \(connect ECONNREFUSED .*\); trying again in/);
    }
    assert.ok(Date.now() - started >= 3000, 'it waited for the store');
    await assert.rejects(stat(path.join(dataDir, 'tls')), { code: 'ENOENT' }, 'no CA made while waiting');
  });
});

describe('what a terminal shows', () => {
  it('on a terminal: readable lines ending in the URL to open and the CA to trust; through a pipe: JSON', async (t) => {
    const script = await run('script', ['--version']).catch(() => undefined);
    if (script === undefined) return t.skip('needs script (util-linux) for a pseudo-terminal');
    const dataDir = await temporaryDirectory();
    const args = ['serve', '--port', '0', '--workers', '1', '--data-dir', dataDir];
    // script gives digestd a pseudo-terminal as stdout and copies what it shows to our pipe.
    const command = [process.execPath, DIGESTD_BIN, ...args].map((word) => `'${word}'`).join(' ');
    const terminal = spawn('script', ['-qfec', `exec ${command}`, '/dev/null'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let shown = '';
    terminal.stdout.setEncoding('utf8').on('data', (chunk: string) => (shown += chunk));
    const exited = new Promise((resolve) => terminal.once('exit', resolve));
    try {
      for (let waited = 0; !shown.includes('digestd serving') && waited < 600; waited++) await sleep(100);
      await sleep(200);
      const lines = stripVTControlCharacters(shown).replace(/\r/g, '').trim().split('\n');
      assert.ok(lines.length > 1, shown);
      for (const line of lines) {
        assert.ok(!line.startsWith('{'), `no JSON on a terminal: ${line}`);
        assert.match(line, /^\[\d\d:\d\d:\d\d\] (INFO|WARN): /, line);
      }
      const last = lines.at(-1)!;
      assert.match(
        last,
        new RegExp(`INFO: digestd serving https://localhost:\\d+ — trust ${dataDir}/tls/ca\\.pem`),
      );
      const starting = lines.find((line) => line.includes('digestd starting'));
      assert.ok(starting !== undefined);
      assert.ok(starting.length < 300, `the configuration is compact: ${starting.length} characters`);
    } finally {
      const { pid } = JSON.parse(await readFile(path.join(dataDir, 'listening.json'), 'utf8')) as {
        pid: number;
      };
      process.kill(pid, 'SIGTERM');
      await exited;
    }

    const piped = spawn(process.execPath, [DIGESTD_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    piped.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const pipedExit = new Promise((resolve) => piped.once('exit', resolve));
    try {
      for (let waited = 0; !output.includes('digestd serving') && waited < 600; waited++) await sleep(100);
      const log = jsonLines(output.slice(0, output.lastIndexOf('\n')));
      const serving = log.at(-1)!;
      assert.match(String(serving.msg), /^digestd serving https:\/\/localhost:\d+ — trust /);
      assert.equal(serving.url, `https://localhost:${new URL(String(serving.address)).port}`);
      assert.equal(serving.ca, path.join(dataDir, 'tls', 'ca.pem'));
    } finally {
      piped.kill('SIGTERM');
      await pipedExit;
    }
  });
});
