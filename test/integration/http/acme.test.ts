import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { acmePaths } from '../../../src/http/tls/acme.js';
import { freePort } from '../../harness/free-port.js';
import { pebbleAvailable, startPebble, type Pebble } from '../../helpers/pebble.js';
import { startServer, type RunningServer } from '../../helpers/server.js';
import { startTcpProxy, type TcpProxy } from '../../helpers/tcp-proxy.js';
import { serviceSkip } from '../../helpers/services.js';

const run = promisify(execFile);
const DOMAIN = 'acme.digestd.test';
const OBTAINED = (line: Record<string, unknown>) =>
  String(line.msg).startsWith('ACME: obtained a certificate');

const skip = await serviceSkip('Pebble', pebbleAvailable, 'apt-get install pebble');
const HEALTHCHECK = fileURLToPath(new URL('../../../deploy/healthcheck.mjs', import.meta.url));

/**
 * listening.json once `accept` takes it: the primary rewrites it after the certificate changes,
 * just after logging so. Gives up after 10 s with the last record read.
 */
async function listenRecord(
  dataDir: string,
  accept: (record: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const record = JSON.parse(await readFile(path.join(dataDir, 'listening.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    if (accept(record) || Date.now() > deadline) return record;
    await sleep(50);
  }
}

/**
 * listening.json names the ACME certificate served now (and no local CA), and the container's
 * health check, which trusts what the record names, passes.
 */
async function assertListenRecordNamesAcme(server: RunningServer, pebble: Pebble): Promise<void> {
  const cert = acmePaths({ dataDir: server.dataDir, directoryUrl: pebble.directoryUrl }).cert;
  const record = await listenRecord(server.dataDir, (candidate) => candidate.cert === cert);
  assert.deepEqual(record, { pid: server.process.pid, url: `https://127.0.0.1:${server.port}`, cert });
  const leaf = new X509Certificate(await readFile(cert, 'utf8')).toString();
  assert.equal(leaf, (await servedChain(server.port))[0]);
  // Pebble's root is no system CA: the check verifies the served chain against the recorded file.
  const check = await run(process.execPath, [HEALTHCHECK, '--data-dir', server.dataDir]).then(
    () => ({ code: 0, stderr: '' }),
    (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
  );
  assert.deepEqual(check, { code: 0, stderr: '' });
}

/** The chain a handshake for DOMAIN presents, leaf first, as PEM. */
function servedChain(port: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: DOMAIN, rejectUnauthorized: false }, () => {
      const chain: string[] = [];
      let certificate = socket.getPeerCertificate(true);
      const seen = new Set<string>();
      while (certificate?.raw && !seen.has(certificate.fingerprint256)) {
        seen.add(certificate.fingerprint256);
        chain.push(new X509Certificate(certificate.raw).toString());
        certificate = certificate.issuerCertificate;
      }
      socket.end();
      resolve(chain);
    });
    socket.once('error', reject);
  });
}

/** GET https://DOMAIN:<port><path> trusting only `ca`, with DOMAIN resolved to 127.0.0.1 by curl. */
async function curl(
  port: number,
  urlPath: string,
  caFile: string,
): Promise<{ status: number; body: string }> {
  const { stdout } = await run(
    'curl',
    [
      '-sS',
      '--resolve',
      `${DOMAIN}:${port}:127.0.0.1`,
      '--cacert',
      caFile,
      '-w',
      '\n%{http_code}',
      `https://${DOMAIN}:${port}${urlPath}`,
    ],
    { timeout: 10_000 },
  );
  const lines = stdout.split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

/** GET https://localhost:<port><path> trusting the local CA (the certificate served before ACME). */
async function curlLocal(
  port: number,
  urlPath: string,
  caFile: string,
): Promise<{ status: number; body: string }> {
  const { stdout } = await run(
    'curl',
    ['-sS', '--cacert', caFile, '-w', '\n%{http_code}', `https://localhost:${port}${urlPath}`],
    {
      timeout: 10_000,
    },
  );
  const lines = stdout.split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

/** The served chain verifies against Pebble's root for DOMAIN, by openssl's strict checks. */
async function assertVerifiesAgainstPebble(server: RunningServer, rootFile: string): Promise<void> {
  const openssl = run(
    'openssl',
    [
      's_client',
      '-connect',
      `127.0.0.1:${server.port}`,
      '-servername',
      DOMAIN,
      '-CAfile',
      rootFile,
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-verify_hostname',
      DOMAIN,
      '-verify_return_error',
      '-brief',
    ],
    { timeout: 10_000 },
  );
  // s_client quits when its input ends, once the handshake is done.
  openssl.child.stdin?.end();
  const handshake = await openssl.catch((error: { stdout: string; stderr: string }) => error);
  const verdict = handshake.stderr
    .split('\n')
    .filter((line) => /Verif/.test(line))
    .join('; ');
  process.stdout.write(`# openssl s_client against Pebble's root: ${verdict}\n`);
  assert.match(handshake.stderr, /Verification: OK/);
}

function acmeArgs(pebble: Pebble, httpPort: number, extra: string[] = []): string[] {
  return [
    '--acme-domain',
    DOMAIN,
    '--acme-email',
    'ops@digestd.test',
    '--acme-directory',
    pebble.directoryUrl,
    '--acme-ca-cert',
    pebble.httpsCaFile,
    '--acme-http-port',
    String(httpPort),
    '--host',
    '127.0.0.1',
    ...extra,
  ];
}

describe('ACME against Pebble, http-01', { skip }, () => {
  let pebble: Pebble;
  let server: RunningServer;
  let httpPort: number;
  let rootFile: string;
  before(async () => {
    httpPort = await freePort();
    pebble = await startPebble({ httpPort, tlsPort: await freePort() });
    server = await startServer({ timeoutMs: 60_000, args: acmeArgs(pebble, httpPort) });
    rootFile = path.join(server.dataDir, 'pebble-root.pem');
    await writeFile(rootFile, await pebble.root());
  });
  after(async () => {
    await server?.stop();
    await pebble?.stop();
  });

  it("obtains a certificate for the domain and serves its full chain, which verifies against Pebble's root", async () => {
    const obtained = await server.waitForLog(OBTAINED, 60_000);
    process.stdout.write(`# ${String(obtained.msg)}\n`);
    await assertListenRecordNamesAcme(server, pebble);
    const chain = await servedChain(server.port);
    assert.ok(chain.length >= 2, `leaf and intermediate served, got ${chain.length}`);
    assert.ok(new X509Certificate(chain[0]!).checkHost(DOMAIN));
    await assertVerifiesAgainstPebble(server, rootFile);
    const health = await curl(server.port, '/readyz', rootFile);
    assert.equal(health.status, 200, health.body);
    const posted = await run('curl', [
      '-sS',
      '--resolve',
      `${DOMAIN}:${server.port}:127.0.0.1`,
      '--cacert',
      rootFile,
      `https://${DOMAIN}:${server.port}/messages`,
      '-H',
      'content-type: application/json',
      '-d',
      '{"message":"acme"}',
    ]);
    assert.match(posted.stdout, /"digest":"[0-9a-f]{64}"/);
  });

  it("shows the served certificate's expiry in /metrics", async () => {
    const metrics = await curl(server.port, '/metrics', rootFile);
    const match = /^digestd_tls_certificate_expiry_timestamp_seconds (\S+)$/m.exec(metrics.body);
    assert.ok(match, metrics.body.slice(0, 500));
    const leaf = new X509Certificate((await servedChain(server.port))[0]!);
    assert.equal(Number(match[1]), Date.parse(leaf.validTo) / 1000);
    assert.match(metrics.body, /^digestd_acme_order_failures_total 0$/m);
    assert.match(metrics.body, /^digestd_tls_certificate_provisional 0$/m);
  });

  it('redirects plain HTTP on the http-01 port to HTTPS', async () => {
    const answer = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      httpRequest(
        { host: '127.0.0.1', port: httpPort, path: '/messages/abc', headers: { host: DOMAIN } },
        (response) => {
          response.resume();
          resolve({ status: response.statusCode ?? 0, location: response.headers.location });
        },
      )
        .on('error', reject)
        .end();
    });
    assert.deepEqual(answer, { status: 308, location: `https://${DOMAIN}:${server.port}/messages/abc` });
  });

  it('reuses the stored certificate on restart instead of ordering a new one', async () => {
    const before = (await servedChain(server.port))[0];
    await server.stop();
    server = await startServer({
      timeoutMs: 60_000,
      dataDir: server.dataDir,
      args: acmeArgs(pebble, httpPort),
    });
    assert.equal((await servedChain(server.port))[0], before);
    assert.equal(
      server.logs.some((line) => String(line.msg).startsWith('ACME: ordering')),
      false,
    );
    assert.equal((await curl(server.port, '/readyz', rootFile)).status, 200);
  });
});

describe('ACME against Pebble, tls-alpn-01 on the HTTPS port', { skip }, () => {
  let pebble: Pebble;
  let server: RunningServer | undefined;
  after(async () => {
    await server?.stop();
    await pebble?.stop();
  });

  it('obtains a certificate answering the challenge on the HTTPS port, with no http-01 listener', async () => {
    const httpsPort = await freePort();
    const httpPort = await freePort();
    pebble = await startPebble({ httpPort, tlsPort: httpsPort });
    server = await startServer({
      timeoutMs: 60_000,
      args: [...acmeArgs(pebble, httpPort, ['--acme-challenge', 'tls-alpn-01']), '--port', String(httpsPort)],
    });
    const obtained = await server.waitForLog(OBTAINED, 60_000);
    process.stdout.write(`# tls-alpn-01: ${String(obtained.msg)}\n`);
    const rootFile = path.join(server.dataDir, 'pebble-root.pem');
    await writeFile(rootFile, await pebble.root());
    await assertVerifiesAgainstPebble(server, rootFile);
    await assertListenRecordNamesAcme(server, pebble);
    assert.equal(
      server.logs.some((line) => String(line.msg).includes('answering http-01')),
      false,
    );
    assert.equal((await curl(server.port, '/healthz', rootFile)).status, 200);
  });
});

describe('ACME against Pebble, tls-alpn-01 with the worker replaced during the order', { skip }, () => {
  let pebble: Pebble | undefined;
  let server: RunningServer | undefined;
  let proxy: TcpProxy | undefined;
  after(async () => {
    await server?.stop();
    await proxy?.close();
    await pebble?.stop();
  });

  it('a worker started while the challenge is pending answers the validation', async () => {
    const httpsPort = await freePort();
    // The CA's validation connection waits in the proxy until the worker has been replaced.
    proxy = await startTcpProxy('127.0.0.1', httpsPort);
    proxy.hold();
    pebble = await startPebble({ httpPort: await freePort(), tlsPort: proxy.port });
    server = await startServer({
      timeoutMs: 60_000,
      args: [
        ...acmeArgs(pebble, await freePort(), ['--acme-challenge', 'tls-alpn-01']),
        '--port',
        String(httpsPort),
        '--workers',
        '1',
      ],
    });
    const [first] = server.workerPids();
    assert.ok(first !== undefined);
    for (const deadline = Date.now() + 30_000; proxy.held === 0; await sleep(50)) {
      assert.ok(Date.now() < deadline, 'the CA never tried to validate');
    }
    process.kill(first, 'SIGKILL');
    const replacement = await server.waitForLog(
      (line) => line.msg === 'worker listening' && line.workerPid !== first,
      30_000,
    );
    proxy.release();
    const obtained = await server.waitForLog(OBTAINED, 60_000);
    process.stdout.write(
      `# worker ${first} killed, ${String(replacement.workerPid)} validated: ${String(obtained.msg)}\n`,
    );
    assert.ok(
      server.logs.some(
        (line) =>
          line.pid === replacement.workerPid &&
          line.msg === 'ACME: answering the tls-alpn-01 challenge' &&
          line.answering === true,
      ),
      'the replacement answers the pending challenge',
    );
    assert.equal(
      server.logs.some((line) => String(line.msg).startsWith('ACME: the order failed')),
      false,
      'the first order succeeds',
    );
  });
});

describe('ACME renewal against Pebble', { skip }, () => {
  let pebble: Pebble;
  let server: RunningServer | undefined;
  after(async () => {
    await server?.stop();
    await pebble?.stop();
  });

  it('replaces a certificate inside its renewal window while serving every request', async () => {
    const httpPort = await freePort();
    // 30-second certificates: the renewal falls due halfway, 15 s after each is issued.
    pebble = await startPebble({ httpPort, tlsPort: await freePort(), validitySeconds: 30 });
    server = await startServer({ timeoutMs: 60_000, args: acmeArgs(pebble, httpPort) });
    const running = server;
    await running.waitForLog(OBTAINED, 60_000);
    const rootFile = path.join(running.dataDir, 'pebble-root.pem');
    await writeFile(rootFile, await pebble.root());
    const first = (await servedChain(running.port))[0];
    let requests = 0;
    const failures: string[] = [];
    const deadline = Date.now() + 45_000;
    while (Date.now() < deadline && running.logs.filter(OBTAINED).length < 2) {
      const answer = await curl(running.port, '/healthz', rootFile).catch((error: Error) => ({
        status: 0,
        body: error.message,
      }));
      requests += 1;
      if (answer.status !== 200) failures.push(`${answer.status} ${answer.body}`);
      await sleep(200);
    }
    // A few more requests on the renewed certificate.
    for (let index = 0; index < 5; index += 1) {
      const answer = await curl(running.port, '/healthz', rootFile);
      requests += 1;
      if (answer.status !== 200) failures.push(`${answer.status} ${answer.body}`);
    }
    const renewed = (await servedChain(running.port))[0];
    process.stdout.write(
      `# renewal: ${running.logs.filter(OBTAINED).length} certificates, ${requests} requests, ${failures.length} failed\n`,
    );
    assert.ok(running.logs.filter(OBTAINED).length >= 2, 'the certificate was renewed');
    assert.notEqual(renewed, first);
    assert.deepEqual(failures, []);
  });
});

describe('ACME failures keep the server serving', { skip }, () => {
  it('with the directory unreachable: serves the local CA certificate, /readyz 503, logs the cause, counts it', async () => {
    const closedPort = await freePort();
    const server = await startServer({
      timeoutMs: 60_000,
      args: [
        '--acme-domain',
        DOMAIN,
        '--acme-directory',
        `https://127.0.0.1:${closedPort}/dir`,
        '--acme-http-port',
        String(await freePort()),
        '--host',
        '127.0.0.1',
      ],
    });
    try {
      const failed = await server.waitForLog(
        (line) => String(line.msg).startsWith('ACME: the order failed'),
        60_000,
      );
      process.stdout.write(`# ${String(failed.msg)}\n`);
      const directory = `https://127.0.0.1:${closedPort}/dir`;
      assert.equal(
        failed.msg,
        `ACME: the order failed (cannot reach the ACME directory ${directory}: connect ECONNREFUSED 127.0.0.1:${closedPort}); keeping the current certificate, retrying in 60 s`,
      );
      assert.ok(failed.err, "the error is logged, with acme-client's own as its cause");
      const caFile = path.join(server.dataDir, 'tls', 'ca.pem');
      // Until an ACME certificate comes, listening.json names the local CA's, which is served.
      assert.deepEqual(await listenRecord(server.dataDir, () => true), {
        pid: server.process.pid,
        url: `https://127.0.0.1:${server.port}`,
        cert: path.join(server.dataDir, 'tls', 'cert.pem'),
        ca: caFile,
      });
      const ready = await curlLocal(server.port, '/readyz', caFile);
      assert.equal(ready.status, 503);
      assert.match(ready.body, /no ACME certificate yet/);
      assert.equal((await curlLocal(server.port, '/healthz', caFile)).status, 200);
      const metrics = await curlLocal(server.port, '/metrics', caFile);
      assert.match(metrics.body, /^digestd_acme_order_failures_total 1$/m);
      assert.match(metrics.body, /^digestd_tls_certificate_provisional 1$/m);
    } finally {
      await server.stop();
    }
  });

  it("with the challenge refused (nothing on the port the CA checks): keeps serving and logs the CA's reason", async () => {
    const pebble = await startPebble({ httpPort: await freePort(), tlsPort: await freePort() });
    // digestd answers http-01 on another port than the one Pebble connects to.
    const server = await startServer({ timeoutMs: 60_000, args: acmeArgs(pebble, await freePort()) });
    try {
      const failed = await server.waitForLog(
        (line) => String(line.msg).startsWith('ACME: the order failed'),
        60_000,
      );
      process.stdout.write(`# ${String(failed.msg)}\n`);
      assert.match(String(failed.msg), /connection refused|refused|invalid/i);
      const caFile = path.join(server.dataDir, 'tls', 'ca.pem');
      assert.equal((await curlLocal(server.port, '/healthz', caFile)).status, 200);
      assert.equal((await curlLocal(server.port, '/readyz', caFile)).status, 503);
      assert.equal(
        await readFile(path.join(server.dataDir, 'tls', 'cert.pem'), 'utf8'),
        (await servedChain(server.port))[0],
      );
    } finally {
      await server.stop();
      await pebble.stop();
    }
  });
});
