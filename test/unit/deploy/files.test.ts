import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SCHEMA } from '../../../src/config/schema.js';

const deployFile = (name: string) => fileURLToPath(new URL(`../../../deploy/${name}`, import.meta.url));

describe('deploy files', () => {
  // The Dockerfile is checked by the programs that read it: scripts/container-test.sh builds it
  // with buildah and checks the image's user, volume, health check, stop signal and entrypoint
  // with podman. compose.yaml has no engine in the unit tier, so its settings are checked here.
  it('compose.yaml runs the image health check and keeps the data in a volume', async () => {
    const compose = await readFile(deployFile('compose.yaml'), 'utf8');
    for (const text of [
      'restart: always',
      'driver: json-file',
      'max-size: 10m',
      "test: ['CMD', 'node', '/app/deploy/healthcheck.mjs']",
      '- digestd-data:/var/lib/digestd',
    ]) {
      assert.ok(compose.includes(text), `compose.yaml has ${text}`);
    }
  });

  it('docker run and compose put an init first and wait longer than the drain before SIGKILL', async () => {
    const readme = await readFile(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
    // The drain lasts at most --shutdown-timeout.
    const drainSeconds = SCHEMA.supervisor.settings.shutdownTimeoutSeconds.default;
    const dockerRun = readme.split('\n').find((line) => line.startsWith('docker run '));
    assert.ok(dockerRun, 'the README has a docker run line');
    assert.match(dockerRun, / --init /);
    const stopTimeout = / --stop-timeout (\d+) /.exec(dockerRun);
    assert.ok(
      stopTimeout && Number(stopTimeout[1]) > drainSeconds,
      `${dockerRun}: a stop timeout over ${drainSeconds} s`,
    );

    const compose = await readFile(deployFile('compose.yaml'), 'utf8');
    assert.match(compose, /^ {4}init: true$/m);
    const composeDrain = /^ {6}DIGESTD_SHUTDOWN_TIMEOUT: '(\d+)'$/m.exec(compose);
    const grace = /^ {4}stop_grace_period: (\d+)s$/m.exec(compose);
    assert.ok(composeDrain && grace, 'compose.yaml sets the drain and the grace period');
    assert.ok(Number(grace[1]) > Number(composeDrain[1]), 'the grace period outlasts the drain');

    // scripts/container-test.sh runs the image with the README's arguments.
    const containerTest = await readFile(
      fileURLToPath(new URL('../../../scripts/container-test.sh', import.meta.url)),
      'utf8',
    );
    assert.match(containerTest, /run -d --name "\$NAME" "\$\{run_limits\[@\]\}" --init --stop-timeout 20 /);
    assert.equal(stopTimeout[1], '20');
  });
});
