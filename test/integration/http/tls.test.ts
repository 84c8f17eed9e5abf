import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { ensureLocalCertificate, localCaPaths } from '../../../src/http/tls/local-ca.js';
import { makeOldSelfSignedCertificate } from '../../helpers/certificates.js';
import { postMessage, request, startServer, type RunningServer } from '../../helpers/server.js';
import { serviceSkip } from '../../helpers/services.js';
import { pythonWithRequests, rustlsClient } from '../../helpers/tls-clients.js';

const run = promisify(execFile);
const DAY_MS = 86_400_000;

/** The certificate a TLS handshake with the server presents, as PEM. */
function servedCertificate(port: number, ca: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerX509Certificate()?.toString() ?? '');
      socket.end();
    });
    socket.once('error', reject);
  });
}

describe('HTTPS with the local CA', () => {
  let server: RunningServer;
  let caPath: string;
  before(async () => {
    server = await startServer();
    caPath = path.join(server.dataDir, 'tls', 'ca.pem');
  });
  after(() => server.stop());

  it('creates ca.pem, cert.pem and 0600 keys in <data-dir>/tls and names the CA in the log', async () => {
    for (const key of ['ca-key.pem', 'key.pem']) {
      assert.equal((await stat(path.join(server.dataDir, 'tls', key))).mode & 0o777, 0o600, key);
    }
    assert.ok(server.logs.some((line) => String(line.msg).includes(`curl --cacert ${caPath}`)));
    assert.ok(server.logs.some((line) => String(line.msg).startsWith('created a local CA at')));
  });

  it('serves a certificate that is no CA, for serverAuth, naming localhost, 127.0.0.1 and ::1', async () => {
    const served = new X509Certificate(await servedCertificate(server.port, server.ca));
    const ca = new X509Certificate(server.ca!);
    assert.equal(served.ca, false);
    assert.ok(served.checkIssued(ca) && served.verify(ca.publicKey));
    assert.deepEqual(served.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.ok(served.checkHost('localhost'));
    assert.ok(served.checkIP('127.0.0.1'));
    assert.ok(served.checkIP('::1'));
  });

  it('round-trips a message over HTTPS, verifying the certificate for localhost', async () => {
    const url = server.url.replace('127.0.0.1', 'localhost');
    const posted = await request(`${url}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'over tls' }),
      ca: server.ca,
    });
    assert.equal(posted.status, 201);
    const { digest } = posted.json<{ digest: string }>();
    const read = await request(`${url}/messages/${digest}`, { ca: server.ca });
    assert.deepEqual(read.json(), { message: 'over tls' });
  });

  it('is trusted by curl --cacert ca.pem without -k, by name and by address', async () => {
    for (const host of ['localhost', '127.0.0.1']) {
      const { stdout } = await run('curl', [
        '-sS',
        '--cacert',
        caPath,
        `https://${host}:${server.port}/healthz`,
      ]);
      assert.deepEqual(JSON.parse(stdout), { status: 'ok' }, host);
    }
  });

  it('passes openssl verify -x509_strict -purpose sslserver, file and served chain', async () => {
    const { stdout } = await run('openssl', [
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-verify_hostname',
      'localhost',
      '-CAfile',
      caPath,
      path.join(server.dataDir, 'tls', 'cert.pem'),
    ]);
    process.stdout.write(`# openssl verify: ${stdout}`);
    assert.match(stdout, /cert\.pem: OK/);
    const handshake = await run(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${server.port}`,
        '-servername',
        'localhost',
        '-CAfile',
        caPath,
        '-x509_strict',
        '-purpose',
        'sslserver',
        '-verify_hostname',
        'localhost',
        '-verify_return_error',
        '-brief',
      ],
      { timeout: 10_000 },
    ).catch((error: { stdout: string; stderr: string }) => error);
    process.stdout.write(
      `# openssl s_client: ${handshake.stderr
        .split('\n')
        .filter((line) => /Verif/.test(line))
        .join('; ')}\n`,
    );
    assert.match(handshake.stderr, /Verification: OK/);
  });

  it('is trusted by Python requests with verify=ca.pem', async (t) => {
    const skip = await serviceSkip(
      'python3-requests',
      pythonWithRequests,
      'apt-get install python3-requests',
    );
    if (skip) return t.skip(skip);
    const python = await pythonWithRequests();
    const { stdout } = await run(python, [
      '-c',
      'import sys, requests; r = requests.get(sys.argv[1], verify=sys.argv[2], timeout=10); print(r.status_code, r.text)',
      `https://localhost:${server.port}/healthz`,
      caPath,
    ]);
    process.stdout.write(`# python requests: ${stdout}`);
    assert.equal(stdout.trim(), '200 {"status":"ok"}');
  });

  it('is trusted by a rustls (webpki) client given ca.pem as its only root', async (t) => {
    const skip = await serviceSkip(
      'a rustls client',
      rustlsClient,
      'apt-get install cargo librust-rustls-dev librust-rustls-pemfile-dev',
    );
    if (skip) return t.skip(skip);
    const { stdout } = await run(
      await rustlsClient(),
      [caPath, 'localhost', String(server.port), '/healthz'],
      {
        timeout: 10_000,
      },
    );
    process.stdout.write(`# rustls client: ${stdout.split('\n')[0]}, ${stdout.split('\n')[1]}\n`);
    assert.match(stdout, /^rustls TLSv1_3 /);
    assert.match(stdout, /HTTP\/1\.1 200 OK/);
    assert.match(stdout, /\{"status":"ok"\}/);
  });

  it('refuses TLS 1.1 and accepts TLS 1.2', async () => {
    const handshake = (version: 'TLSv1.1' | 'TLSv1.2') =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({
          host: '127.0.0.1',
          port: server.port,
          ca: server.ca,
          servername: 'localhost',
          minVersion: version,
          maxVersion: version,
        });
        socket.once('secureConnect', () => {
          resolve(socket.getProtocol() ?? '');
          socket.end();
        });
        socket.once('error', reject);
      });
    assert.equal(await handshake('TLSv1.2'), 'TLSv1.2');
    await assert.rejects(handshake('TLSv1.1'));
  });

  it('reuses the same CA and certificate on the next start', async () => {
    const certBefore = await readFile(path.join(server.dataDir, 'tls', 'cert.pem'), 'utf8');
    const caBefore = server.ca;
    await server.stop();
    server = await startServer({ dataDir: server.dataDir });
    assert.equal(server.ca, caBefore);
    assert.equal(await readFile(path.join(server.dataDir, 'tls', 'cert.pem'), 'utf8'), certBefore);
    assert.equal((await postMessage(server, 'after restart')).status, 201);
  });
});

describe('the local certificate over time', () => {
  it('re-makes every data/tls/*.pem found empty at start (as a power cut leaves them) and serves', async () => {
    const first = await startServer();
    const paths = localCaPaths(first.dataDir);
    await first.stop();
    for (const file of [paths.caCert, paths.caKey, paths.cert, paths.key]) await writeFile(file, '');
    const server = await startServer({ dataDir: first.dataDir });
    try {
      const line = server.logs.find((entry) => /created a new local CA/.test(String(entry.msg)));
      assert.match(String(line?.msg), /ca(-key)?\.pem was empty: created a new local CA/);
      assert.equal(new X509Certificate(await servedCertificate(server.port, server.ca)).ca, false);
      assert.equal((await postMessage(server, 'after the power cut')).status, 201);
    } finally {
      await server.stop();
    }
  });

  it('upgrades an old single self-signed certificate in place, with one log line, for rustls too', async (t) => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'digestd-upgrade-'));
    const paths = localCaPaths(dataDir);
    await mkdir(paths.directory, { recursive: true });
    await makeOldSelfSignedCertificate(paths.cert, paths.key);
    const server = await startServer({ dataDir });
    try {
      const lines = server.logs.filter((line) => String(line.msg).startsWith('upgraded '));
      assert.equal(lines.length, 1);
      assert.match(String(lines[0]?.msg), /replaced by a local CA \(ca\.pem\)/);
      assert.equal(new X509Certificate(await servedCertificate(server.port, server.ca)).ca, false);
      const skip = await serviceSkip(
        'a rustls client',
        rustlsClient,
        'apt-get install cargo librust-rustls-dev librust-rustls-pemfile-dev',
      );
      if (skip) return t.skip(skip);
      const { stdout } = await run(await rustlsClient(), [
        paths.caCert,
        'localhost',
        String(server.port),
        '/healthz',
      ]);
      assert.match(stdout, /HTTP\/1\.1 200 OK/);
    } finally {
      await server.stop();
    }
  });

  it('re-issues a certificate near its end from the same CA on SIGHUP, without a restart', async () => {
    const server = await startServer();
    try {
      const paths = localCaPaths(server.dataDir);
      const first = await servedCertificate(server.port, server.ca);
      // The same CA issued a certificate a year ago: it is inside its re-issue window now.
      const yearAgo = new Date(Date.now() - 380 * DAY_MS);
      await ensureLocalCertificate({ dataDir: server.dataDir, now: yearAgo, extraNames: ['old.test'] });
      assert.ok(new X509Certificate(await readFile(paths.cert, 'utf8')).checkHost('old.test'));
      server.process.kill('SIGHUP');
      await server.waitForLog((line) => String(line.msg).startsWith('re-issued the server certificate'));
      await server.waitForLog((line) => line.msg === 'reloaded the TLS certificate');
      const served = new X509Certificate(await servedCertificate(server.port, server.ca));
      assert.notEqual(served.toString(), first);
      assert.ok(Date.parse(served.validTo) > Date.now() + 300 * DAY_MS);
      assert.equal(await readFile(paths.caCert, 'utf8'), server.ca);
      assert.equal((await postMessage(server, 'after re-issue')).status, 201);
    } finally {
      await server.stop();
    }
  });
});

describe('TLS options', () => {
  it('serves plain HTTP with --no-tls', async () => {
    const server = await startServer({ args: ['--no-tls'] });
    try {
      assert.match(server.url, /^http:\/\//);
      assert.equal((await postMessage(server, 'plain')).status, 201);
    } finally {
      await server.stop();
    }
  });

  it('serves the certificate given by --tls-cert and --tls-key', async () => {
    const first = await startServer();
    await first.stop();
    const certPath = path.join(first.dataDir, 'tls', 'cert.pem');
    const keyPath = path.join(first.dataDir, 'tls', 'key.pem');
    const server = await startServer({ args: ['--tls-cert', certPath, '--tls-key', keyPath] });
    try {
      assert.equal(server.ca, undefined, 'no local CA is made');
      const read = await request(`${server.url}/healthz`, { ca: first.ca });
      assert.equal(read.status, 200);
    } finally {
      await server.stop();
    }
  });
});
