import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, writeFile, chown } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { connect } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeCertificate } from '../../helpers/certificates.js';
import { startServer, temporaryDirectory, type RunningServer } from '../../helpers/server.js';
import { eventually } from '../../helpers/sockets.js';
import { freePort, postgresForTest, serviceSkip, TEST_POSTGRES_URL } from '../../helpers/services.js';
import { nginxTemporaryPaths } from '../../harness/nginx.js';

const run = promisify(execFile);
const NGINX = '/usr/sbin/nginx';
const shippedConfig = fileURLToPath(new URL('../../../deploy/nginx.conf', import.meta.url));
// The client connects from another loopback address than nginx's own towards the nodes
// (127.0.0.1), so a node's log shows whether it names the client or the proxy.
const CLIENT_ADDRESS = '127.0.0.2';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

const nginxSkip = await serviceSkip(
  "Debian's nginx",
  () => access(NGINX),
  'install nginx (bash .ci/services does)',
);
const postgres = await postgresForTest(
  'nginx_front',
  'the nodes behind nginx share the test PostgreSQL (bash .ci/services starts it)',
);

/**
 * The shipped file with this machine's certificate, listen port and upstream nodes put in;
 * every other line as shipped. Each replacement must apply, or the test would check another file.
 */
function substitute(shipped: string, port: number, certDir: string, nodes: number[]): string {
  let upstream = 0;
  const replaced = shipped.split('\n').flatMap((line) => {
    const server = /^(\s*)server 10\.0\.0\.\d+:8080 (.*)$/.exec(line);
    if (server) {
      const node = nodes[upstream++];
      return node === undefined ? [] : [`${server[1]}server 127.0.0.1:${node} ${server[2]}`];
    }
    return [
      line
        .replace(/^(\s*)listen 443 /, `$1listen 127.0.0.1:${port} `)
        .replace(/^(\s*)listen \[::\]:443 /, `$1listen [::1]:${port} `)
        .replace('/etc/ssl/digestd/fullchain.pem', path.join(certDir, 'fullchain.pem'))
        .replace('/etc/ssl/digestd/privkey.pem', path.join(certDir, 'privkey.pem')),
    ];
  });
  const text = replaced.join('\n');
  assert.equal(upstream, 3, 'the shipped upstream lists three nodes');
  for (const expected of [
    `listen 127.0.0.1:${port} ssl http2;`,
    `listen [::1]:${port} ssl http2;`,
    path.join(certDir, 'fullchain.pem'),
    path.join(certDir, 'privkey.pem'),
  ]) {
    assert.ok(text.includes(expected), `substituted ${expected}`);
  }
  return text;
}

/** The http { } block this file is meant to be included from, with the test's own paths. */
function mainConfig(directory: string): string {
  const runAs = process.getuid?.() === 0 ? 'user nobody nogroup;' : '';
  return `${runAs}
worker_processes 1;
pid ${directory}/nginx.pid;
error_log ${directory}/error.log warn;
events { worker_connections 256; }
http {
    access_log ${directory}/access.log;
    ${nginxTemporaryPaths(directory).join('\n    ')}
    include ${directory}/digestd.conf;
}
`;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe(
  'deploy/nginx.conf in front of two digestd nodes',
  { skip: nginxSkip ?? postgres.skip ?? false },
  () => {
    let directory: string;
    let port: number;
    let ca: string;
    let nodes: RunningServer[];
    let nginx: ReturnType<typeof spawn> | undefined;
    let nginxStderr = '';
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });

    const send = (method: string, urlPath: string, body?: string) =>
      new Promise<Answer>((resolve, reject) => {
        const outgoing = request(
          {
            host: '127.0.0.1',
            port,
            method,
            path: urlPath,
            ca,
            servername: 'localhost',
            localAddress: CLIENT_ADDRESS,
            agent,
            headers: body === undefined ? {} : { 'content-type': 'application/json' },
          },
          (response) => {
            let text = '';
            response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
            response.on('end', () =>
              resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
            );
          },
        );
        outgoing.on('error', reject);
        outgoing.end(body);
      });

    before(async () => {
      directory = await temporaryDirectory('digestd-nginx-');
      const certDir = path.join(directory, 'ssl');
      await mkdir(certDir);
      const certificate = await makeCertificate('localhost');
      ca = certificate.cert;
      await writeFile(path.join(certDir, 'fullchain.pem'), certificate.cert);
      await writeFile(path.join(certDir, 'privkey.pem'), certificate.key, { mode: 0o600 });
      if (process.getuid?.() === 0) await chown(directory, 65534, 65534);

      const store = `${TEST_POSTGRES_URL}?table=${postgres.table}`;
      nodes = await Promise.all(
        [0, 1].map(() =>
          startServer({
            args: ['--no-tls', '--trust-proxy', '127.0.0.1', '--store', store, '--workers', '1'],
            timeoutMs: 60_000,
          }),
        ),
      );
      port = await freePort();
      const shipped = await readFile(shippedConfig, 'utf8');
      await writeFile(
        path.join(directory, 'digestd.conf'),
        substitute(
          shipped,
          port,
          certDir,
          nodes.map((node) => node.port),
        ),
      );
      await writeFile(path.join(directory, 'nginx.conf'), mainConfig(directory));
    });

    after(async () => {
      agent.destroy();
      if (nginx && nginx.exitCode === null) {
        const exited = new Promise((resolve) => nginx?.once('exit', resolve));
        nginx.kill('SIGQUIT');
        await exited;
      }
      await Promise.all(nodes.map((node) => node.stop()));
    });

    it('nginx -t accepts the shipped file', async (context) => {
      const { stderr } = await run(NGINX, ['-t', '-c', path.join(directory, 'nginx.conf')]);
      for (const line of stderr.trim().split('\n')) context.diagnostic(line);
      assert.match(stderr, /syntax is ok/);
      assert.match(stderr, /test is successful/);
      assert.doesNotMatch(stderr, /\[(emerg|alert|crit|error)\]/);
    });

    it('answers through nginx over HTTP/2 with HSTS and no version, and keeps answering 201 after a node is SIGKILLed', async (context) => {
      nginx = spawn(NGINX, ['-c', path.join(directory, 'nginx.conf'), '-g', 'daemon off;'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      nginx.stderr?.setEncoding('utf8').on('data', (chunk: string) => (nginxStderr += chunk));
      for (let attempt = 0; ; attempt++) {
        const up = await new Promise<boolean>((resolve) => {
          const socket = connect(port, '127.0.0.1', () => {
            socket.destroy();
            resolve(true);
          });
          socket.on('error', () => resolve(false));
        });
        if (up) break;
        assert.ok(attempt < 100 && nginx.exitCode === null, `nginx did not start listening\n${nginxStderr}`);
        await sleep(100);
      }

      // A client other than Node's negotiates HTTP/2 with nginx and verifies its certificate.
      const curl = await run('curl', [
        '--silent',
        '--show-error',
        '--http2',
        '--cacert',
        path.join(directory, 'ssl', 'fullchain.pem'),
        '--resolve',
        `localhost:${port}:127.0.0.1`,
        '--interface',
        CLIENT_ADDRESS,
        '--output',
        '/dev/null',
        '--write-out',
        '%{http_version} %{http_code}',
        `https://localhost:${port}/readyz`,
      ]);
      assert.equal(curl.stdout, '2 200');

      const first = await send('POST', '/messages', '{"message":"foo"}');
      assert.equal(first.status, 201, first.body);
      assert.deepEqual(JSON.parse(first.body), { digest: sha256('foo') });
      assert.equal(first.headers['strict-transport-security'], 'max-age=63072000');
      assert.equal(first.headers.server, 'nginx');
      const ready = await send('GET', '/readyz');
      assert.equal(ready.status, 200, ready.body);
      assert.equal(ready.headers['strict-transport-security'], 'max-age=63072000');
      const missing = await send('GET', `/messages/${'0'.repeat(64)}`);
      assert.equal(missing.status, 404);
      assert.equal(missing.headers['strict-transport-security'], 'max-age=63072000');

      // Both nodes take requests before one of them goes.
      for (let index = 0; index < 6; index++) {
        const answer = await send('POST', '/messages', JSON.stringify({ message: `before-${index}` }));
        assert.equal(answer.status, 201, answer.body);
      }
      const [killed, survivor] = nodes as [RunningServer, RunningServer];
      const postsOf = (lines: Record<string, unknown>[]) =>
        lines.filter((line) => line.msg === 'request' && line.method === 'POST' && line.url === '/messages');
      // Access lines reach the primary's log over IPC, a moment after the answer: the seven POSTs so
      // far (foo and the six) must all be in before the survivor's log is marked, or a late one
      // would count as after the kill.
      await eventually(() => postsOf(killed.logs).length + postsOf(survivor.logs).length >= 7);
      const served = (node: RunningServer) => node.logs.filter((line) => line.msg === 'request').length;
      assert.ok(served(killed) > 0 && served(survivor) > 0, 'nginx spreads requests over both nodes');

      // The whole node dies at once, as a machine would: the primary and its worker.
      for (const pid of [killed.process.pid, ...killed.workerPids()]) {
        if (pid !== undefined) process.kill(pid, 'SIGKILL');
      }
      await killed.exited;
      const survivorBefore = survivor.logs.length;
      const statuses: number[] = [];
      for (let index = 0; index < 40; index++) {
        const message = `after-kill-${index}`;
        const answer = await send('POST', '/messages', JSON.stringify({ message }));
        statuses.push(answer.status);
        if (answer.status === 201) assert.deepEqual(JSON.parse(answer.body), { digest: sha256(message) });
      }
      assert.deepEqual(
        statuses,
        Array.from({ length: 40 }, () => 201),
        nginxStderr,
      );
      const stored = await send('GET', `/messages/${sha256('after-kill-39')}`);
      assert.deepEqual([stored.status, JSON.parse(stored.body)], [200, { message: 'after-kill-39' }]);

      // The survivor logs the client's address from X-Forwarded-For, never nginx's.
      const requests = () => survivor.logs.slice(survivorBefore).filter((line) => line.msg === 'request');
      await eventually(() => postsOf(requests()).length >= 40);
      const posts = postsOf(requests());
      assert.equal(posts.length, 40);
      assert.deepEqual([...new Set(requests().map((line) => line.remote))], [CLIENT_ADDRESS]);
      context.diagnostic(`the surviving node logged: ${JSON.stringify(posts.at(-1))}`);
      // nginx's own access log names the same client: it is the TCP peer there.
      const access = await readFile(path.join(directory, 'access.log'), 'utf8');
      assert.match(access, new RegExp(`^${CLIENT_ADDRESS.replaceAll('.', '\\.')} `, 'm'));
    });
  },
);
