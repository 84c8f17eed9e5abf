import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { stat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { postMessage, request, startServer, type RunningServer } from '../../helpers/server.js';

const run = promisify(execFile);

describe('HTTPS with the generated certificate', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.stop());

  it('generates cert.pem and a 0600 key.pem in <data-dir>/tls and says so in the log', async () => {
    const keyMode = (await stat(path.join(server.dataDir, 'tls', 'key.pem'))).mode & 0o777;
    assert.equal(keyMode, 0o600);
    assert.ok(
      server.logs.some((line) => String(line.msg).includes(path.join(server.dataDir, 'tls', 'cert.pem'))),
    );
  });

  it('names localhost, 127.0.0.1 and ::1 in subjectAltName', () => {
    const certificate = new X509Certificate(server.ca!);
    assert.ok(certificate.checkHost('localhost'));
    assert.ok(certificate.checkIP('127.0.0.1'));
    assert.ok(certificate.checkIP('::1'));
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

  it('is trusted by curl --cacert without -k', async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '--cacert',
      path.join(server.dataDir, 'tls', 'cert.pem'),
      `https://localhost:${server.port}/healthz`,
    ]);
    assert.deepEqual(JSON.parse(stdout), { status: 'ok' });
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

  it('reuses the same certificate on the next start', async () => {
    const before = await readFile(path.join(server.dataDir, 'tls', 'cert.pem'), 'utf8');
    await server.stop();
    server = await startServer({ dataDir: server.dataDir });
    assert.equal(server.ca, before);
    assert.equal((await postMessage(server, 'after restart')).status, 201);
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
      assert.equal(server.ca, undefined, 'no self-signed certificate is generated');
      const read = await request(`${server.url}/healthz`, { ca: await readFile(certPath, 'utf8') });
      assert.equal(read.status, 200);
    } finally {
      await server.stop();
    }
  });
});
