import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startServer, type RunningServer } from '../../helpers/server.js';

/**
 * Runs `openssl s_client` against the server; resolves with its output. Its stdin is closed, or
 * takes `input` line by line, a second apart, and then closes.
 */
function sClient(
  server: RunningServer,
  args: string[],
  input?: string[],
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${server.port}`, '-servername', 'localhost', ...args],
      { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] },
    );
    if (input !== undefined) {
      const lines = [...input];
      const next = () => {
        const line = lines.shift();
        if (line === undefined) child.stdin!.end();
        else if (child.stdin!.writable) {
          child.stdin!.write(line);
          setTimeout(next, 1000);
        }
      };
      child.stdin!.on('error', () => {});
      setTimeout(next, 1000);
    }
    let output = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

/** The protocol and cipher openssl reports for a completed handshake, e.g. "TLSv1.3, TLS_AES_128_GCM_SHA256". */
function negotiated(output: string): string | undefined {
  const match = /^New, (TLSv[\d.]+), Cipher is (\S+)/m.exec(output);
  return match && match[2] !== '(NONE)' ? `${match[1]}, ${match[2]}` : undefined;
}

describe('TLS policy, checked with openssl s_client', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.stop());

  it('accepts TLS 1.3', async () => {
    const { code, output } = await sClient(server, ['-tls1_3']);
    assert.equal(code, 0, output);
    assert.match(
      negotiated(output) ?? '',
      /^TLSv1\.3, TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)$/,
    );
  });

  it('accepts TLS 1.2 with an ECDHE AEAD suite', async () => {
    const { code, output } = await sClient(server, ['-tls1_2']);
    assert.equal(code, 0, output);
    assert.match(negotiated(output) ?? '', /^TLSv1\.2, ECDHE-ECDSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/);
  });

  it('refuses TLS 1.1 and TLS 1.0 even from a client that allows them', async () => {
    for (const version of ['-tls1_1', '-tls1']) {
      // SECLEVEL=0 lets OpenSSL 3 offer the old protocol at all, so the refusal is the server's.
      const { code, output } = await sClient(server, [version, '-cipher', 'DEFAULT@SECLEVEL=0']);
      assert.notEqual(code, 0, output);
      assert.equal(negotiated(output), undefined, output);
      assert.match(output, /alert protocol version|unsupported protocol|no protocols available/i);
    }
  });

  it('refuses a renegotiation the client starts (TLS 1.2)', async () => {
    // "R" on its own line makes s_client renegotiate; the request after it shows whether the
    // connection survived and what it served.
    const request = 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';
    const { output } = await sClient(
      server,
      ['-tls1_2', '-CAfile', path.join(server.dataDir, 'tls', 'ca.pem')],
      ['R\n', request],
    );
    const [, after = ''] = output.split(/^RENEGOTIATING$/m);
    assert.match(output, /^RENEGOTIATING$/m, output);
    assert.match(
      after,
      /no renegotiation/i,
      `the server answers the renegotiation with its refusal:\n${after}`,
    );
    assert.doesNotMatch(after, /verify return:1/, 'no second handshake takes place');
    assert.doesNotMatch(after, /HTTP\/1\.1 200/, 'the connection does not go on as if renegotiated');
  });

  it('refuses CBC and non-forward-secret suites that node would accept by default', async () => {
    for (const cipher of [
      'ECDHE-ECDSA-AES128-SHA',
      'ECDHE-ECDSA-AES256-SHA384',
      'AES128-GCM-SHA256',
      'AES256-SHA',
    ]) {
      const { code, output } = await sClient(server, ['-tls1_2', '-cipher', `${cipher}@SECLEVEL=0`]);
      assert.notEqual(code, 0, `${cipher} was accepted:\n${output}`);
      assert.equal(negotiated(output), undefined, output);
    }
  });
});
