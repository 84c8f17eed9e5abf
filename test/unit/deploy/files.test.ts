import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const deployFile = (name: string) => fileURLToPath(new URL(`../../../deploy/${name}`, import.meta.url));

describe('deploy files', () => {
  it('the Dockerfile and compose.yaml run that health check and keep the data in a volume', async () => {
    const dockerfile = await readFile(deployFile('Dockerfile'), 'utf8');
    assert.match(dockerfile, /^COPY deploy\/healthcheck\.mjs \.\/deploy\/healthcheck\.mjs$/m);
    assert.match(dockerfile, /CMD \["node", "\/app\/deploy\/healthcheck\.mjs"\]/);
    assert.match(dockerfile, /^USER node$/m);
    assert.match(dockerfile, /^VOLUME \/var\/lib\/digestd$/m);
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
});
