import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type SecureVersion } from 'node:tls';
import * as acme from 'acme-client';
import { secureContextOptions } from '../../../../src/http/connection.js';
import {
  ACME_TLS_ALPN,
  AlpnChallenges,
  createChallengeCertificate,
} from '../../../../src/http/tls/alpn-challenges.js';
import { ensureLocalCertificate } from '../../../../src/http/tls/local-ca.js';

const NAME = 'acme.digestd.test';
const KEY_AUTHORIZATION = 'token.thumbprint';

interface Handshake {
  /** The leaf the server presented, in PEM. */
  certificate: string;
  alpn: string | false | null;
  version: string | null;
}

describe('tls-alpn-01 challenges on the HTTPS port', () => {
  const challenges = new AlpnChallenges();
  let server: Server;
  let port: number;
  let served: string;

  before(async () => {
    // The served certificate of a server waiting for its first ACME certificate: the local CA's.
    const local = await ensureLocalCertificate({
      dataDir: await mkdtemp(path.join(tmpdir(), 'digestd-alpn-')),
    });
    served = local.cert;
    server = createServer(
      { ...secureContextOptions(local), ...challenges.serverOptions() },
      (_request, response) => response.end(),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    challenges.set(NAME, await createChallengeCertificate(NAME, KEY_AUTHORIZATION));
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  function handshake(options: {
    servername?: string;
    protocols?: string[];
    version?: SecureVersion;
  }): Promise<Handshake> {
    return new Promise((resolve, reject) => {
      const socket = connect(
        {
          host: '127.0.0.1',
          port,
          servername: options.servername ?? NAME,
          ALPNProtocols: options.protocols,
          minVersion: options.version ?? 'TLSv1.2',
          maxVersion: options.version ?? 'TLSv1.3',
          rejectUnauthorized: false,
        },
        () => {
          const certificate = socket.getPeerX509Certificate()!.toString();
          resolve({ certificate, alpn: socket.alpnProtocol, version: socket.getProtocol() });
          socket.end();
        },
      );
      socket.once('error', reject);
    });
  }

  const isChallenge = (answer: Handshake) =>
    acme.crypto.isAlpnCertificateAuthorizationValid(answer.certificate, KEY_AUTHORIZATION);

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`a ${version} handshake offering acme-tls/1 for the pending name gets the challenge certificate and acme-tls/1`, async () => {
      const answer = await handshake({ protocols: [ACME_TLS_ALPN], version });
      assert.equal(answer.version, version);
      assert.equal(answer.alpn, ACME_TLS_ALPN);
      assert.ok(isChallenge(answer), 'the challenge certificate, with the key authorization');
    });
  }

  it('TLS 1.3 handshakes for the pending name offering HTTP/1.1, or no ALPN, get the served certificate', async () => {
    const http = await handshake({ protocols: ['http/1.1'], version: 'TLSv1.3' });
    assert.equal(http.alpn, 'http/1.1');
    assert.equal(http.certificate, served);
    const none = await handshake({ version: 'TLSv1.3' });
    assert.equal(none.alpn, false);
    assert.equal(none.certificate, served);
  });

  it('handshakes for another name, or once the challenge is over, get the served certificate and never acme-tls/1', async () => {
    const other = await handshake({ servername: 'localhost', protocols: [ACME_TLS_ALPN, 'http/1.1'] });
    assert.equal(other.certificate, served);
    assert.equal(other.alpn, 'http/1.1');
    // acme-tls/1 is never negotiated with the served certificate (RFC 8737 section 3).
    await assert.rejects(handshake({ servername: 'localhost', protocols: [ACME_TLS_ALPN] }), {
      code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
    });
    challenges.delete(NAME);
    try {
      for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
        const over = await handshake({ protocols: [ACME_TLS_ALPN, 'http/1.1'], version });
        assert.equal(over.certificate, served, version);
        assert.equal(over.alpn, 'http/1.1', version);
      }
    } finally {
      challenges.set(NAME, await createChallengeCertificate(NAME, KEY_AUTHORIZATION));
    }
  });
});
