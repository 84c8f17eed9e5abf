import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, serviceSkip } from '../../helpers/services.js';

const run = promisify(execFile);
const repository = fileURLToPath(new URL('../../../', import.meta.url));
const unitPath = path.join(repository, 'deploy/digestd.service');
const sandbox = fileURLToPath(new URL('unit-sandbox.py', import.meta.url));
// Debian's interpreter, which has Debian's python3-seccomp (a python3 earlier in PATH may not).
const python = '/usr/bin/python3';
// The unit's User=digestd does not exist on a test machine: the sandbox runs its command as nobody.
const serviceUser = 'nobody';
const serviceUid = 65534;

/** `KEY=value` lines of the unit's [Service] section. */
async function serviceSetting(key: string): Promise<string> {
  const unit = await readFile(unitPath, 'utf8');
  const line = unit.split('\n').find((each) => each.startsWith(`${key}=`));
  assert.ok(line, `the unit sets ${key}`);
  return line.slice(key.length + 1);
}

/** The sandbox helper's arguments that run `command` as the unit would, over this state directory. */
function sandboxArgs(stateDir: string, command: string[]): string[] {
  return [
    sandbox,
    '--unit',
    unitPath,
    '--user',
    serviceUser,
    '--path-map',
    `/var/lib/digestd=${stateDir}`,
    '--installed',
    repository,
    // The node running the tests (npx's node@24 lives under /root, which ProtectHome hides).
    '--installed',
    path.dirname(path.dirname(process.execPath)),
    '--',
    ...command,
  ];
}

/** Runs a command in the unit's sandbox; resolves with its exit code and output. */
async function inSandbox(
  stateDir: string,
  command: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(python, sandboxArgs(stateDir, command));
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

const skip = await serviceSkip(
  "the unit's sandbox (root, /usr/bin/python3 with Debian's python3-seccomp)",
  async () => {
    if (process.getuid?.() !== 0) throw new Error('not running as root');
    await run(python, ['-c', 'import seccomp']);
  },
  'run as root with python3-seccomp installed (bash .ci/services installs it)',
);

describe('the systemd unit', () => {
  it('passes systemd-analyze verify and has the promised settings', async (context) => {
    const verifySkip = await serviceSkip(
      'systemd-analyze',
      () => run('systemd-analyze', ['--version']),
      'install systemd (bash .ci/services does)',
    );
    if (verifySkip) {
      context.skip(verifySkip);
      return;
    }
    // verify exits 0 even for unknown keys and bad values; it reports them on stderr.
    const { stdout, stderr } = await run('systemd-analyze', ['verify', unitPath]);
    assert.equal(`${stdout}${stderr}`.trim(), '');
    const unit = await readFile(unitPath, 'utf8');
    for (const line of [
      'Restart=always',
      'User=digestd',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/digestd',
      'KillMode=mixed',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
    ]) {
      assert.ok(unit.split('\n').includes(line), `the unit has ${line}`);
    }
    assert.match(unit, /^ExecStart=.* serve --data-dir \/var\/lib\/digestd/m);
  });
});

describe("digestd under the unit's sandbox", { skip: skip ?? false }, () => {
  let stateDir: string;
  before(async () => {
    // The unit's user reads the installed program, as it would under /opt; a checkout made by
    // mktemp -d is private to its owner.
    const { mode } = await stat(repository);
    if ((mode & 0o005) !== 0o005) await chmod(repository, mode | 0o005);
    stateDir = await mkdtemp(path.join(tmpdir(), 'digestd-unit-'));
    await chown(stateDir, serviceUid, serviceUid);
  });
  after(() => rm(stateDir, { recursive: true, force: true }));

  it('the sandbox refuses what the unit forbids and allows the state directory', async () => {
    // The failure the unit caused: os.networkInterfaces() needs a netlink socket.
    const interfaces = await inSandbox(stateDir, [
      process.execPath,
      '-e',
      'require("node:os").networkInterfaces()',
    ]);
    assert.notEqual(interfaces.code, 0);
    assert.match(interfaces.stderr, /uv_interface_addresses returned Unknown system error 97/);
    const probe = [
      'import os, socket',
      'for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_NETLINK, socket.AF_PACKET):',
      '    try:',
      '        socket.socket(family, socket.SOCK_DGRAM if family == socket.AF_NETLINK else socket.SOCK_STREAM).close()',
      '        print(family.name, "ok")',
      '    except OSError as error:',
      '        print(family.name, error.strerror)',
      `for path in (${JSON.stringify(path.join(stateDir, 'probe'))}, "/etc/digestd-probe", ${JSON.stringify(path.join(repository, 'probe'))}):`,
      '    try:',
      '        open(path, "w").close(); print(path, "writable"); os.remove(path)',
      '    except OSError as error:',
      '        print(path, error.strerror)',
      'status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)',
      'print("uid", os.getuid(), "NoNewPrivs", status["NoNewPrivs"].strip(), "Seccomp", status["Seccomp"].strip(), "CapBnd", status["CapBnd"].strip())',
    ].join('\n');
    const result = await inSandbox(stateDir, [python, '-c', probe]);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.deepEqual(lines, [
      'AF_INET ok',
      'AF_INET6 ok',
      'AF_UNIX ok',
      'AF_NETLINK Address family not supported by protocol',
      'AF_PACKET Address family not supported by protocol',
      `${path.join(stateDir, 'probe')} writable`,
      '/etc/digestd-probe Read-only file system',
      `${path.join(repository, 'probe')} Read-only file system`,
      `uid ${serviceUid} NoNewPrivs 1 Seccomp 2 CapBnd 0000000000000000`,
    ]);
  });

  it("becomes ready with the unit's ExecStart and default host, and serves a round trip", async (context) => {
    // ExecStart as shipped, with the install path and state directory of this machine, and a free port.
    const execStart = (await serviceSetting('ExecStart')).split(' ');
    const port = await freePort();
    const command = execStart.map((word) =>
      word
        .replace('/opt/digestd', repository.replace(/\/$/, ''))
        .replace('/var/lib/digestd', stateDir)
        .replace(/^8443$/, String(port)),
    );
    assert.deepEqual(command.slice(2), ['serve', '--data-dir', stateDir, '--port', String(port)]);
    assert.equal(command[0], '/usr/bin/node', "ExecStart names Debian's node");
    // The test runs this checkout's node (the one running the test), wherever it is installed.
    command[0] = process.execPath;
    const child = spawn(python, sandboxArgs(stateDir, command), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const lines: Record<string, unknown>[] = [];
    try {
      const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready within 60 s\n${stderr}`)), 60_000);
        void exited.then((code) => reject(new Error(`digestd exited with ${code}\n${stderr}`)));
        createInterface({ input: child.stdout }).on('line', (line) => {
          const entry = JSON.parse(line) as Record<string, unknown>;
          lines.push(entry);
          if (String(entry.msg).startsWith('digestd serving')) {
            clearTimeout(timer);
            resolve(entry);
          }
        });
      });
      assert.equal(listening.address, `https://[::]:${port}`);
      context.diagnostic(`in the sandbox: ${String(listening.msg)}`);
      const failures = lines.filter((entry) => entry.level === 'fatal' || entry.level === 'error');
      assert.deepEqual(failures, []);

      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      assert.match(status, /^Uid:\t65534\t/m);
      assert.match(status, /^NoNewPrivs:\t1$/m);
      assert.match(status, /^Seccomp:\t2$/m);

      // What clients trust, as the primary recorded it: its local CA, or the certificate itself.
      const record = JSON.parse(await readFile(path.join(stateDir, 'listening.json'), 'utf8')) as {
        cert: string;
        ca?: string;
      };
      const ca = await readFile(record.ca ?? record.cert, 'utf8');
      const send = (method: string, urlPath: string, body?: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const outgoing = request(
            {
              host: '127.0.0.1',
              port,
              path: urlPath,
              method,
              ca,
              servername: 'localhost',
              headers: body ? { 'content-type': 'application/json' } : {},
            },
            (response) => {
              let text = '';
              response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
              response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
            },
          );
          outgoing.on('error', reject);
          outgoing.end(body);
        });
      const posted = await send('POST', '/messages', '{"message":"foo"}');
      assert.equal(posted.status, 201, posted.body);
      const digest = (JSON.parse(posted.body) as { digest: string }).digest;
      assert.equal(digest, '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae');
      const fetched = await send('GET', `/messages/${digest}`);
      assert.deepEqual([fetched.status, JSON.parse(fetched.body)], [200, { message: 'foo' }]);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr);
  });
});
