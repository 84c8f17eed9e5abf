import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:tls';
import { makeCertificate } from '../../helpers/certificates.js';
import { request, startServer, temporaryDirectory } from '../../helpers/server.js';

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is served. */
function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

describe('SIGHUP', () => {
  it('reloads the certificate in every worker: new connections see it, no connection fails', async () => {
    const [first, second] = await Promise.all([makeCertificate('first'), makeCertificate('second')]);
    const directory = await temporaryDirectory();
    const certPath = path.join(directory, 'cert.pem');
    const keyPath = path.join(directory, 'key.pem');
    await writeFile(certPath, first.cert);
    await writeFile(keyPath, first.key, { mode: 0o600 });
    const ca = `${first.cert.trim()}\n${second.cert.trim()}\n`;
    const server = await startServer({
      args: ['--workers', '2', '--tls-cert', certPath, '--tls-key', keyPath],
    });

    // One long-lived keep-alive connection that must survive the reload.
    let connectionsOpened = 0;
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1, ca });
    const originalCreateConnection = keepAlive.createConnection.bind(keepAlive);
    keepAlive.createConnection = (...args: Parameters<typeof originalCreateConnection>) => {
      connectionsOpened += 1;
      return originalCreateConnection(...args);
    };
    const failures: string[] = [];
    let requests = 0;
    let running = true;
    const loop = async (agent: Agent | false) => {
      while (running) {
        try {
          const reply = await request(`${server.url}/healthz`, { ca, agent, timeoutMs: 10_000 });
          requests += 1;
          if (reply.status !== 200) failures.push(`status ${reply.status}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    };
    const loops = [loop(keepAlive), loop(false), loop(false)];
    try {
      for (let index = 0; index < 4; index++) {
        assert.equal(await servedFingerprint(server.port, ca), first.fingerprint256);
      }

      await writeFile(keyPath, second.key, { mode: 0o600 });
      await writeFile(certPath, second.cert);
      server.process.kill('SIGHUP');
      const reloadedBy = new Set<unknown>();
      await server.waitForLog((line) => {
        if (line.msg === 'reloaded the TLS certificate') reloadedBy.add(line.pid);
        return reloadedBy.size === 2;
      }, 10_000);
      assert.deepEqual([...reloadedBy].sort(), server.workerPids().sort());
      assert.ok(server.logs.some((line) => line.msg === 'reopened the log file'));

      // Round-robin spreads these over both workers.
      for (let index = 0; index < 4; index++) {
        assert.equal(await servedFingerprint(server.port, ca), second.fingerprint256);
      }
      await sleep(300);
    } finally {
      running = false;
      await Promise.all(loops);
      keepAlive.destroy();
      assert.equal(await server.stop(), 0);
    }
    assert.deepEqual(failures, []);
    assert.ok(requests > 20, `only ${requests} requests`);
    assert.equal(connectionsOpened, 1, 'the keep-alive connection was kept across the reload');
  });

  it('keeps the current certificate when the new files are unreadable', async () => {
    const certificate = await makeCertificate('kept');
    const directory = await temporaryDirectory();
    const certPath = path.join(directory, 'cert.pem');
    const keyPath = path.join(directory, 'key.pem');
    await writeFile(certPath, certificate.cert);
    await writeFile(keyPath, certificate.key, { mode: 0o600 });
    const server = await startServer({
      args: ['--workers', '1', '--tls-cert', certPath, '--tls-key', keyPath],
    });
    try {
      await writeFile(certPath, 'not a certificate');
      server.process.kill('SIGHUP');
      const logged = await server.waitForLog(
        (line) => String(line.msg).startsWith('could not reload'),
        10_000,
      );
      assert.equal(logged.level, 'error');
      assert.equal(await servedFingerprint(server.port, certificate.cert), certificate.fingerprint256);
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });
});
