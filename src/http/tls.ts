import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { generate } from 'selfsigned';

/** A certificate and its private key, in PEM, with where they were read from. */
export interface TlsMaterial {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
  /** True when this start generated the self-signed certificate. */
  generated: boolean;
}

/** Options for locating or generating the server certificate. */
export interface TlsOptions {
  /** PEM certificate file given by the operator. */
  certPath?: string | undefined;
  /** PEM key file given by the operator. */
  keyPath?: string | undefined;
  /** Data directory; a self-signed pair lives in <dataDir>/tls/ when no files are given. */
  dataDir: string;
}

const SELF_SIGNED_DAYS = 825;

/**
 * Loads the operator's certificate and key, or the self-signed pair in <dataDir>/tls/,
 * generating that pair on first start (SANs localhost, 127.0.0.1 and ::1; key mode 0600).
 */
export async function loadTlsMaterial(options: TlsOptions): Promise<TlsMaterial> {
  if (options.certPath !== undefined && options.keyPath !== undefined) {
    return readPair(options.certPath, options.keyPath, false);
  }
  const directory = path.join(options.dataDir, 'tls');
  const certPath = path.join(directory, 'cert.pem');
  const keyPath = path.join(directory, 'key.pem');
  try {
    return await readPair(certPath, keyPath, false);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const pems = await generateSelfSigned('localhost', SELF_SIGNED_DAYS);
  // Write to temporary names, then rename: a crash never leaves half a key, and concurrent
  // first starts end with one consistent pair (the key is renamed before the certificate).
  const suffix = `.${process.pid}.tmp`;
  await writeFile(keyPath + suffix, pems.private, { mode: 0o600 });
  await chmod(keyPath + suffix, 0o600);
  await writeFile(certPath + suffix, pems.cert, { mode: 0o644 });
  await rename(keyPath + suffix, keyPath);
  await rename(certPath + suffix, certPath);
  return { ...(await readPair(certPath, keyPath, false)), generated: true };
}

async function readPair(certPath: string, keyPath: string, generated: boolean): Promise<TlsMaterial> {
  const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
  // Fail early with a clear message rather than at the first handshake.
  new X509Certificate(cert);
  return { cert, key, certPath, keyPath, generated };
}

/**
 * A self-signed ECDSA P-256 certificate for `commonName`, valid `days` days (from a minute ago, for
 * clock skew), with SANs localhost, 127.0.0.1 and ::1. It is its own CA, so clients trust it by
 * pointing at the certificate itself (curl --cacert, requests verify=).
 */
export async function generateSelfSigned(
  commonName: string,
  days: number,
): Promise<{ cert: string; private: string }> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  return generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate: new Date(notBeforeDate.getTime() + days * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyCertSign: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
}
