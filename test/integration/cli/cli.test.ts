import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { makeCertificate } from '../../helpers/certificates.js';
import { DIGESTD_BIN, startServer, temporaryDirectory } from '../../helpers/server.js';

const run = promisify(execFile);
const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

async function digestd(args: string[], env: Record<string, string> = {}, timeout = 60_000) {
  try {
    const { stdout, stderr } = await run(process.execPath, [DIGESTD_BIN, ...args], {
      env: { ...process.env, ...env },
      timeout,
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
    for (const text of ['serve', '--port', 'DIGESTD_PORT', '--data-dir', '--no-tls', '--max-message-size']) {
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
      DIGESTD_MAX_MESSAGE_SIZE: '-1',
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--port/);
    assert.match(result.stderr, /--log-level/);
    assert.match(result.stderr, /DIGESTD_MAX_MESSAGE_SIZE/);
  });

  it('an unknown flag exits 2, with the flag it is one or two typing mistakes from', async () => {
    const result = await digestd(['serve', '--colour']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, 'digestd: --colour: unknown option (digestd serve --help lists them)\n');
    const typo = await digestd(['serve', '--prot', '9000']);
    assert.equal(typo.code, 2);
    assert.equal(
      typo.stderr,
      'digestd: --prot: unknown option; did you mean --port? (digestd serve --help lists them)\n',
    );
  });

  it('--tls-cert alone names the missing file and the missing key, one line each', async () => {
    const result = await digestd(['serve', '--tls-cert', '/nonexistent']);
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      'digestd: Invalid configuration:\n  --tls-cert: /nonexistent does not exist\n  --tls-key: required with --tls-cert (or give neither, and a local CA makes the certificate)\n',
    );
  });

  it('--help fits 80 columns when stdout is not a terminal', async () => {
    for (const args of [['--help'], ['serve', '--help'], ['migrate', '--help']]) {
      const result = await digestd(args);
      // A word longer than the help column (a URL) stays whole, on a line of its own.
      const over = result.stdout.split('\n').filter((line) => line.length > 80 && /\S\s+\S/.test(line));
      assert.deepEqual(over, [], args.join(' '));
    }
  });

  it('a port already in use stops serve with exit 1 and one line naming the address, no retries or stacks', async () => {
    const first = await startServer();
    try {
      const result = await digestd([
        'serve',
        '--host',
        '127.0.0.1',
        '--port',
        String(first.port),
        '--workers',
        '2',
        '--data-dir',
        first.dataDir + '-second',
      ]);
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        `digestd: Cannot listen on 127.0.0.1:${first.port}: the address is already in use by another program (EADDRINUSE).\n`,
      );
      const lines = result.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.ok(lines.length > 0);
      // Each of the two workers is started once; none is restarted after the port was found taken.
      assert.ok(lines.filter((line) => line.msg === 'worker started').length <= 2);
      assert.deepEqual(
        lines.filter((line) => String(line.msg).startsWith('restarting worker')),
        [],
      );
      assert.ok(!result.stdout.includes('"stack"'), 'no stack trace in the log');
    } finally {
      await first.stop();
    }
  });

  it('a data directory that cannot be created stops serve with exit 2, naming it', async () => {
    // Node's recursive mkdir never returns under /proc (it creates the parent again, for ever).
    const result = await digestd(['serve', '--data-dir', '/proc/digestd-nope', '--port', '0'], {}, 10_000);
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      'digestd: --data-dir: Cannot create the directory /proc/digestd-nope: no such file or directory.\n',
    );
  });

  it("a TLS file that is missing, not PEM, or not the certificate's key stops serve with exit 2, naming the file", async () => {
    const directory = await temporaryDirectory('digestd-tls-files-');
    const file = (name: string) => path.join(directory, name);
    const [mine, other] = await Promise.all([makeCertificate('mine'), makeCertificate('other')]);
    await Promise.all([
      writeFile(file('cert.pem'), mine.cert),
      writeFile(file('key.pem'), mine.key),
      writeFile(file('other-key.pem'), other.key),
      writeFile(file('garbage.pem'), 'not a certificate\n'),
      writeFile(file('empty.pem'), ''),
    ]);
    const cases: [string, string, string][] = [
      ['missing.pem', 'key.pem', `--tls-cert: ${file('missing.pem')} does not exist`],
      ['cert.pem', 'empty.pem', `--tls-key: ${file('empty.pem')} is empty`],
      [
        'garbage.pem',
        'key.pem',
        `--tls-cert, --tls-key: The TLS certificate ${file('garbage.pem')} is not a PEM certificate (no start line).`,
      ],
      [
        'cert.pem',
        'garbage.pem',
        `--tls-cert, --tls-key: The TLS key ${file('garbage.pem')} is not a PEM private key (unsupported).`,
      ],
      [
        'cert.pem',
        'other-key.pem',
        `--tls-cert, --tls-key: The TLS key ${file('other-key.pem')} does not belong to the certificate ${file('cert.pem')}.`,
      ],
    ];
    try {
      for (const [cert, key, expected] of cases) {
        const result = await digestd([
          'serve',
          ...['--tls-cert', file(cert), '--tls-key', file(key), '--port', '0', '--data-dir', directory],
        ]);
        assert.equal(result.code, 2, result.stderr);
        assert.equal(result.stderr, `digestd: ${expected}\n`);
      }
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('migrate --help and verify --help print their own options', async () => {
    const migrate = await digestd(['migrate', '--help']);
    assert.equal(migrate.code, 0);
    assert.match(migrate.stdout, /^Usage: digestd migrate --from <url> --to <url>/);
    for (const flag of ['--from', '--to', '--store-timeout']) assert.ok(migrate.stdout.includes(flag), flag);
    const verify = await digestd(['verify', '-h']);
    assert.equal(verify.code, 0);
    assert.match(verify.stdout, /^Usage: digestd verify/);
    assert.ok(verify.stdout.includes('--store '));
    for (const output of [migrate.stdout, verify.stdout]) {
      assert.ok(!output.includes('--port'), 'no setting of serve');
      assert.ok(!output.includes('Options of serve'));
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
