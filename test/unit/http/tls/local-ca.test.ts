import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import {
  ensureLocalCertificate,
  localCaPaths,
  REISSUE_BEFORE_DAYS,
  SERVER_CERTIFICATE_DAYS,
} from '../../../../src/http/tls/local-ca.js';
import { runAt } from '../../../../src/http/tls/timer.js';
import { makeOldSelfSignedCertificate } from '../../../helpers/certificates.js';

const DAY_MS = 86_400_000;

async function freshDataDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'digestd-local-ca-'));
}

describe('the local CA', () => {
  it('creates a CA (CA:TRUE, pathlen 0) and a server certificate it signs (CA:FALSE, serverAuth)', async () => {
    const dataDir = await freshDataDir();
    const local = await ensureLocalCertificate({ dataDir });
    const ca = new X509Certificate(local.caCert);
    const server = new X509Certificate(local.cert);
    assert.ok(ca.ca);
    assert.match(ca.subject, /CN=digestd local CA [0-9a-f]{8} on /);
    assert.equal(server.ca, false);
    assert.ok(server.checkIssued(ca));
    assert.ok(server.verify(ca.publicKey));
    assert.ok(server.checkHost('localhost'));
    assert.ok(server.checkIP('127.0.0.1'));
    assert.ok(server.checkIP('::1'));
    assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    const days = (Date.parse(server.validTo) - Date.parse(server.validFrom)) / DAY_MS;
    assert.ok(days <= SERVER_CERTIFICATE_DAYS, `valid for ${days} days`);
    const constraints = new x509.X509Certificate(local.caCert).getExtension(x509.BasicConstraintsExtension);
    assert.equal(constraints?.ca, true);
    assert.equal(constraints?.pathLength, 0);
    assert.equal(constraints?.critical, true);
    assert.equal(local.changes.length, 2);
    for (const key of [local.paths.caKey, local.paths.key]) {
      assert.equal((await stat(key)).mode & 0o777, 0o600, key);
    }
  });

  it('reuses the CA and the certificate on the next call, changing nothing', async () => {
    const dataDir = await freshDataDir();
    const first = await ensureLocalCertificate({ dataDir });
    const second = await ensureLocalCertificate({ dataDir });
    assert.equal(second.cert, first.cert);
    assert.equal(second.caCert, first.caCert);
    assert.deepEqual(second.changes, []);
  });

  it(`re-issues the server certificate from the same CA ${REISSUE_BEFORE_DAYS} days before it expires`, async () => {
    const dataDir = await freshDataDir();
    const first = await ensureLocalCertificate({ dataDir });
    const almostDue = new Date(first.notAfter.getTime() - (REISSUE_BEFORE_DAYS + 1) * DAY_MS);
    assert.equal((await ensureLocalCertificate({ dataDir, now: almostDue })).cert, first.cert);
    const due = new Date(first.notAfter.getTime() - (REISSUE_BEFORE_DAYS - 1) * DAY_MS);
    const reissued = await ensureLocalCertificate({ dataDir, now: due });
    assert.notEqual(reissued.cert, first.cert);
    assert.equal(reissued.caCert, first.caCert);
    assert.ok(reissued.notAfter > first.notAfter);
    assert.match(reissued.changes.join('\n'), /re-issued the server certificate .*: it expires on/);
    assert.ok(new X509Certificate(reissued.cert).verify(new X509Certificate(first.caCert).publicKey));
  });

  it('re-issues the certificate when a wanted name is missing from it', async () => {
    const dataDir = await freshDataDir();
    await ensureLocalCertificate({ dataDir });
    const named = await ensureLocalCertificate({ dataDir, extraNames: ['Digestd.Test', '192.0.2.7'] });
    assert.match(named.changes.join('\n'), /does not name digestd\.test, 192\.0\.2\.7/);
    const server = new X509Certificate(named.cert);
    assert.ok(server.checkHost('digestd.test'));
    assert.ok(server.checkIP('192.0.2.7'));
    assert.ok(server.checkHost('localhost'));
  });

  it('upgrades a directory holding the single self-signed certificate of earlier versions', async () => {
    const dataDir = await freshDataDir();
    const paths = localCaPaths(dataDir);
    await mkdir(paths.directory, { recursive: true });
    await makeOldSelfSignedCertificate(paths.cert, paths.key);
    const old = await readFile(paths.cert, 'utf8');
    const upgraded = await ensureLocalCertificate({ dataDir });
    assert.equal(upgraded.changes.length, 1);
    assert.match(
      upgraded.changes[0] ?? '',
      /^upgraded .*: the self-signed certificate is replaced by a local CA/,
    );
    assert.notEqual(upgraded.cert, old);
    assert.equal(await readFile(paths.cert, 'utf8'), upgraded.cert);
    assert.equal(new X509Certificate(upgraded.cert).ca, false);
    assert.deepEqual((await ensureLocalCertificate({ dataDir })).changes, []);
  });

  it('refuses to make a new CA when ca.pem exists without its key', async () => {
    const dataDir = await freshDataDir();
    const local = await ensureLocalCertificate({ dataDir });
    await rm(local.paths.caKey);
    await assert.rejects(ensureLocalCertificate({ dataDir }), /ca-key\.pem does not/);
  });

  it('re-issues a server certificate or key found empty or cut short, from the same CA, saying why', async () => {
    for (const [which, damage] of [
      ['cert', ''],
      ['key', ''],
      ['cert', 'half'],
      ['key', 'half'],
    ] as const) {
      const dataDir = await freshDataDir();
      const first = await ensureLocalCertificate({ dataDir });
      const file = first.paths[which];
      const whole = await readFile(file, 'utf8');
      await writeFile(file, damage === '' ? '' : whole.slice(0, whole.length / 2));
      const second = await ensureLocalCertificate({ dataDir });
      assert.equal(second.caCert, first.caCert, `${which} ${damage}`);
      assert.notEqual(second.cert, first.cert);
      assert.ok(new X509Certificate(second.cert).verify(new X509Certificate(first.caCert).publicKey));
      assert.equal(await readFile(second.paths.cert, 'utf8'), second.cert);
      assert.equal(second.changes.length, 1);
      assert.match(
        second.changes[0]!,
        new RegExp(`re-issued .* ${file.replaceAll('.', '\\.')} (was empty|could not be read)`),
      );
    }
  });

  it('makes a new CA when ca.pem or ca-key.pem is found empty or cut short, and a certificate it signs', async () => {
    for (const [which, damage] of [
      ['caCert', ''],
      ['caKey', ''],
      ['caCert', 'half'],
      ['caKey', 'half'],
    ] as const) {
      const dataDir = await freshDataDir();
      const first = await ensureLocalCertificate({ dataDir });
      const file = first.paths[which];
      const whole = await readFile(file, 'utf8');
      await writeFile(file, damage === '' ? '' : whole.slice(0, whole.length / 2));
      const second = await ensureLocalCertificate({ dataDir });
      assert.notEqual(second.caCert, first.caCert, `${which} ${damage}`);
      assert.ok(new X509Certificate(second.cert).verify(new X509Certificate(second.caCert).publicKey));
      assert.match(second.changes[0]!, /(was empty|could not be read).*: created a new local CA/);
      const third = await ensureLocalCertificate({ dataDir });
      assert.deepEqual(third.changes, []);
    }
  });
});

describe('runAt', () => {
  it('calls back at once for a time that has passed, and later for one to come', async () => {
    const calls: string[] = [];
    await new Promise<void>((resolve) => {
      runAt(new Date(Date.now() - 1000), () => calls.push('past'));
      runAt(new Date(Date.now() + 30), () => {
        calls.push('future');
        resolve();
      });
      // runAt's timers never keep the process alive; this one holds it while the test waits.
      setTimeout(() => {}, 100);
    });
    assert.deepEqual(calls, ['past', 'future']);
  });

  it('never calls back once cancelled', async () => {
    let called = false;
    runAt(new Date(Date.now() + 20), () => (called = true)).cancel();
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(called, false);
  });
});
