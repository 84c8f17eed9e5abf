import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { classify, type AuditReport } from '../../scripts/audit.js';

const root = new URL('../../', import.meta.url);
const readJson = async <T>(file: string) => JSON.parse(await readFile(new URL(file, root), 'utf8')) as T;

interface Lockfile {
  packages: Record<string, { version?: string; hasInstallScript?: boolean; dev?: boolean }>;
}

describe('supply chain', () => {
  it('commits a lockfile that matches package.json', async () => {
    const manifest = await readJson<{
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    }>('package.json');
    const lock = await readJson<Lockfile & { lockfileVersion: number }>('package-lock.json');
    assert.ok(lock.lockfileVersion >= 3);
    const root = lock.packages[''] as {
      dependencies?: Record<string, string>;
      devDependencies?: Record<string, string>;
    };
    assert.deepEqual(root.dependencies, manifest.dependencies);
    assert.deepEqual(root.devDependencies, manifest.devDependencies);
  });

  it('reviews every dependency that has an install script in package.json allowScripts', async () => {
    const manifest = await readJson<{ allowScripts?: Record<string, boolean> }>('package.json');
    const lock = await readJson<Lockfile>('package-lock.json');
    const withScripts = Object.entries(lock.packages)
      .filter(([, entry]) => entry.hasInstallScript === true)
      .map(([location]) => location.slice(location.lastIndexOf('node_modules/') + 'node_modules/'.length));
    assert.ok(withScripts.length > 0, 'lmdb has an install script; the lockfile should say so');
    for (const name of withScripts) {
      assert.equal(
        typeof manifest.allowScripts?.[name],
        'boolean',
        `${name} runs an install script nobody reviewed`,
      );
    }
    // None is needed: lmdb and msgpackr-extract load prebuilt binaries, esbuild ships its own.
    assert.deepEqual(
      Object.entries(manifest.allowScripts ?? {}).filter(([, allowed]) => allowed),
      [],
    );
  });

  it('loads lmdb from its prebuilt platform package without compiling anything', async () => {
    assert.equal(existsSync(new URL('node_modules/lmdb/build', root)), false, 'no node-gyp build ran');
    const require = createRequire(new URL('node_modules/lmdb/', root));
    assert.ok(require.resolve(`@lmdb/lmdb-${process.platform}-${process.arch}/package.json`));
    const lmdb = (await import('lmdb')) as { open: unknown };
    assert.equal(typeof lmdb.open, 'function');
  });

  it('fails the audit on any advisory that is not allowlisted, and only on those', () => {
    const report: AuditReport = {
      vulnerabilities: {
        fastify: {
          severity: 'high',
          via: [
            {
              name: 'fastify',
              title: 'Example',
              url: 'https://github.com/advisories/GHSA-aaaa',
              severity: 'high',
            },
          ],
        },
        pino: {
          severity: 'low',
          via: [
            'fast-redact',
            { name: 'pino', title: 'Other', url: 'https://github.com/advisories/GHSA-bbbb', severity: 'low' },
          ],
        },
      },
    };
    const allowlist = [
      { url: 'https://github.com/advisories/GHSA-bbbb', package: 'pino', reason: 'not reachable' },
    ];
    const { findings, unexpected } = classify(report, allowlist);
    assert.equal(findings.length, 2);
    assert.deepEqual(
      unexpected.map((finding) => finding.url),
      ['https://github.com/advisories/GHSA-aaaa'],
    );
    assert.deepEqual(classify({ vulnerabilities: {} }, []).findings, []);
  });
});
