import {
  createPrivateKey,
  randomBytes,
  webcrypto,
  X509Certificate as NodeX509Certificate,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { createDirectory } from '../../directory.js';
import { writeFileDurably } from '../../durable-file.js';

// @peculiar/x509 uses node's global webcrypto (globalThis.crypto) by default.
type CryptoKey = webcrypto.CryptoKey;

/** ECDSA P-256 with SHA-256: small keys, fast handshakes, accepted by every current client. */
export const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** The local CA outlives many server certificates; clients trust it once. */
export const LOCAL_CA_DAYS = 3650;
/** The longest validity that browsers accept for a server certificate. */
export const SERVER_CERTIFICATE_DAYS = 397;
/** A server certificate this close to its end is re-issued from the same CA. */
export const REISSUE_BEFORE_DAYS = 30;
/** The names every local server certificate carries. */
export const LOCAL_NAMES: readonly string[] = ['localhost', '127.0.0.1', '::1'];

/** The files of a local CA and its server certificate, in `<dataDir>/tls/`. */
export interface LocalCaPaths {
  directory: string;
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
}

/** Where the local CA of a data directory lives. */
export function localCaPaths(dataDir: string): LocalCaPaths {
  const directory = path.join(dataDir, 'tls');
  return {
    directory,
    caCert: path.join(directory, 'ca.pem'),
    caKey: path.join(directory, 'ca-key.pem'),
    cert: path.join(directory, 'cert.pem'),
    key: path.join(directory, 'key.pem'),
  };
}

/** Options of ensureLocalCertificate. */
export interface LocalCertificateOptions {
  /** Data directory; the files live in `<dataDir>/tls/`. */
  dataDir: string;
  /** Names (DNS names or IP addresses) the server certificate carries besides localhost, 127.0.0.1 and ::1. */
  extraNames?: readonly string[] | undefined;
  /** The current time (tests move it). */
  now?: Date | undefined;
}

/** A server certificate signed by the local CA, ready to serve. */
export interface LocalCertificate {
  paths: LocalCaPaths;
  /** The server certificate in PEM. */
  cert: string;
  /** Its private key in PEM (PKCS#8). */
  key: string;
  /** The local CA certificate in PEM: what clients trust. */
  caCert: string;
  notAfter: Date;
  /** What this call changed on disk, one sentence each, for the log; empty when nothing changed. */
  changes: string[];
}

/**
 * Loads the local CA and its server certificate from `<dataDir>/tls/`, creating what is missing:
 * the CA on first start, a server certificate when there is none, when it is within
 * REISSUE_BEFORE_DAYS of its end, when it lacks one of the wanted names or when another CA signed
 * it. A directory holding a lone self-signed certificate without a CA is upgraded in place. A CA
 * or server certificate file found empty or cut short (a power cut while it was written) is made
 * again. Keys are written with mode 0600, every file durably (see writeFileDurably).
 */
export async function ensureLocalCertificate(options: LocalCertificateOptions): Promise<LocalCertificate> {
  const paths = localCaPaths(options.dataDir);
  const now = options.now ?? new Date();
  const names = wantedNames(options.extraNames);
  const changes: string[] = [];
  await createDirectory(paths.directory, 0o700);

  const found = await readCa(paths);
  let ca = found !== undefined && 'damaged' in found ? undefined : found;
  let upgraded = false;
  if (ca === undefined) {
    const existing = await readOptional(paths.cert);
    upgraded = existing !== undefined && isSelfSignedCa(existing);
    ca = await createCa(now);
    await writeFileDurably(paths.caKey, ca.keyPem, 0o600);
    await writeFileDurably(paths.caCert, ca.certPem, 0o644);
    changes.push(
      found !== undefined && 'damaged' in found
        ? `${found.damaged}: created a new local CA at ${paths.caCert}; clients that trusted the old one must trust this one`
        : upgraded
          ? `upgraded ${paths.directory}: the self-signed certificate is replaced by a local CA (ca.pem) and a server certificate it signs; clients now trust ${paths.caCert}`
          : `created a local CA at ${paths.caCert}`,
    );
  }

  const stored = upgraded ? undefined : await readServerCertificate(paths);
  const current = stored !== undefined && 'damaged' in stored ? undefined : stored;
  const reason =
    stored !== undefined && 'damaged' in stored
      ? stored.damaged
      : current && reissueReason(current.cert, ca, names, now);
  if (current && reason === undefined) {
    return {
      paths,
      cert: current.certPem,
      key: current.keyPem,
      caCert: ca.certPem,
      notAfter: current.notAfter,
      changes,
    };
  }
  const issued = await issueServerCertificate(ca, names, now);
  await writeFileDurably(paths.key, issued.keyPem, 0o600);
  await writeFileDurably(paths.cert, issued.certPem, 0o644);
  if (!upgraded) {
    changes.push(
      reason === undefined
        ? `issued a server certificate at ${paths.cert} from the local CA`
        : `re-issued the server certificate at ${paths.cert} from the local CA: ${reason}`,
    );
  }
  return {
    paths,
    cert: issued.certPem,
    key: issued.keyPem,
    caCert: ca.certPem,
    notAfter: issued.notAfter,
    changes,
  };
}

/** When the local server certificate with this end date is re-issued. */
export function localReissueTime(notAfter: Date): Date {
  return new Date(notAfter.getTime() - REISSUE_BEFORE_DAYS * DAY_MS);
}

function wantedNames(extraNames: readonly string[] | undefined): string[] {
  const names = [...LOCAL_NAMES];
  for (const name of extraNames ?? []) {
    const normalised = isIP(name) ? name : name.toLowerCase();
    if (!names.includes(normalised)) names.push(normalised);
  }
  return names;
}

interface Ca {
  cert: x509.X509Certificate;
  certPem: string;
  keyPem: string;
  privateKey: CryptoKey;
}

/** What a file that cannot be used holds, for the log line that says it is made again. */
interface Damaged {
  damaged: string;
}

/** Parses a PEM file digestd wrote; a file empty or cut short is reported, not thrown. */
async function parseOwnFile<T>(
  file: string,
  text: string,
  parse: (text: string) => T | Promise<T>,
): Promise<{ value: T } | Damaged> {
  if (text.trim() === '') return { damaged: `${file} was empty` };
  try {
    return { value: await parse(text) };
  } catch (error) {
    return { damaged: `${file} could not be read (${(error as Error).message})` };
  }
}

async function readCa(paths: LocalCaPaths): Promise<Ca | Damaged | undefined> {
  const certPem = await readOptional(paths.caCert);
  if (certPem === undefined) return undefined;
  const keyPem = await readOptional(paths.caKey);
  if (keyPem === undefined) {
    throw new Error(`${paths.caCert} exists but its key ${paths.caKey} does not: restore it, or remove both`);
  }
  const cert = await parseOwnFile(paths.caCert, certPem, (text) => new x509.X509Certificate(text));
  if ('damaged' in cert) return cert;
  const privateKey = await parseOwnFile(paths.caKey, keyPem, importPrivateKey);
  if ('damaged' in privateKey) return privateKey;
  return { cert: cert.value, certPem, keyPem, privateKey: privateKey.value };
}

async function readServerCertificate(paths: LocalCaPaths) {
  const [certPem, keyPem] = await Promise.all([readOptional(paths.cert), readOptional(paths.key)]);
  if (certPem === undefined || keyPem === undefined) return undefined;
  const cert = await parseOwnFile(paths.cert, certPem, (text) => new NodeX509Certificate(text));
  if ('damaged' in cert) return cert;
  const key = await parseOwnFile(paths.key, keyPem, (text) => createPrivateKey(text));
  if ('damaged' in key) return key;
  // A pair that does not match (a crash between two renames) is re-issued rather than served.
  if (!cert.value.checkPrivateKey(key.value)) return undefined;
  return { cert: cert.value, certPem, keyPem, notAfter: new Date(cert.value.validTo) };
}

function reissueReason(
  cert: NodeX509Certificate,
  ca: Ca,
  names: readonly string[],
  now: Date,
): string | undefined {
  if (!cert.verify(new NodeX509Certificate(ca.certPem).publicKey)) return 'it was not signed by this CA';
  const notAfter = new Date(cert.validTo);
  if (now >= localReissueTime(notAfter)) return `it expires on ${notAfter.toISOString()}`;
  const missing = names.filter((name) => (isIP(name) ? !cert.checkIP(name) : !cert.checkHost(name)));
  if (missing.length > 0) return `it does not name ${missing.join(', ')}`;
  return undefined;
}

function isSelfSignedCa(certPem: string): boolean {
  try {
    const cert = new NodeX509Certificate(certPem);
    return cert.ca && cert.checkIssued(cert);
  } catch {
    return false;
  }
}

async function createCa(now: Date): Promise<Ca> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const notBefore = new Date(now.getTime() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    // The id tells two local CAs apart in a client's trust store.
    name: `CN=digestd local CA ${randomBytes(4).toString('hex')} on ${hostname()}, O=digestd local development CA`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + LOCAL_CA_DAYS * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert,
    certPem: cert.toString('pem') + '\n',
    keyPem: await exportPrivateKey(keys.privateKey),
    privateKey: keys.privateKey,
  };
}

async function issueServerCertificate(ca: Ca, names: readonly string[], now: Date) {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  // A minute back for clocks that lag; never past the CA's own end.
  const notBefore = new Date(now.getTime() - 60_000);
  const notAfter = new Date(
    Math.min(notBefore.getTime() + SERVER_CERTIFICATE_DAYS * DAY_MS, ca.cert.notAfter.getTime()),
  );
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${names.find((name) => isIP(name) === 0) ?? 'localhost'}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        names.map((name) =>
          isIP(name) ? { type: 'ip' as const, value: name } : { type: 'dns' as const, value: name },
        ),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportPrivateKey(keys.privateKey), notAfter };
}

/** 16 random bytes with the top bit clear: positive, unique, within RFC 5280's 20 octets. */
export function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

export async function exportPrivateKey(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY') + '\n';
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, false, ['sign']);
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
