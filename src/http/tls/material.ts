import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { InvalidTlsFiles, systemErrorReason } from '../../errors.js';
import { ensureLocalCertificate } from './local-ca.js';

/** A certificate chain and its private key, in PEM, with where they came from. */
export interface TlsMaterial {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
  /** The local CA that signed `cert`, which clients trust; absent for the operator's files. */
  caPath: string | undefined;
  /** End of the served certificate's validity. */
  notAfter: Date;
  /** What loading changed on disk (a CA created, a certificate issued or upgraded), for the log. */
  changes: string[];
}

/** Options for locating or generating the server certificate. */
export interface TlsOptions {
  /** PEM certificate file given by the operator. */
  certPath?: string | undefined;
  /** PEM key file given by the operator. */
  keyPath?: string | undefined;
  /** Data directory; the local CA and its server certificate live in <dataDir>/tls/ when no files are given. */
  dataDir: string;
  /** Names the local server certificate carries besides localhost, 127.0.0.1 and ::1. */
  extraNames?: readonly string[] | undefined;
  /** The current time (tests move it). */
  now?: Date | undefined;
}

/**
 * Loads the operator's certificate and key, or else the server certificate of the local CA in
 * <dataDir>/tls/, creating the CA on first start and re-issuing the certificate when it is due.
 */
export async function loadTlsMaterial(options: TlsOptions): Promise<TlsMaterial> {
  if (options.certPath !== undefined && options.keyPath !== undefined) {
    return readOperatorPair(options.certPath, options.keyPath);
  }
  const local = await ensureLocalCertificate({
    dataDir: options.dataDir,
    extraNames: options.extraNames,
    now: options.now,
  });
  return {
    cert: local.cert,
    key: local.key,
    certPath: local.paths.cert,
    keyPath: local.paths.key,
    caPath: local.paths.caCert,
    notAfter: local.notAfter,
    changes: local.changes,
  };
}

async function readOperatorPair(certPath: string, keyPath: string): Promise<TlsMaterial> {
  const [cert, key] = await Promise.all([readPem(certPath, 'certificate'), readPem(keyPath, 'private key')]);
  // Fail early, naming the file, rather than at the first handshake.
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (error) {
    throw new InvalidTlsFiles(
      `The TLS certificate ${certPath} is not a PEM certificate (${openSslReason(error)}).`,
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new InvalidTlsFiles(`The TLS key ${keyPath} is not a PEM private key (${openSslReason(error)}).`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new InvalidTlsFiles(`The TLS key ${keyPath} does not belong to the certificate ${certPath}.`);
  }
  return { cert, key, certPath, keyPath, caPath: undefined, notAfter: new Date(leaf.validTo), changes: [] };
}

async function readPem(file: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new InvalidTlsFiles(`Cannot read the TLS ${what} ${file}: ${systemErrorReason(error)}.`);
  }
  // The operator's file, not digestd's to re-make: say what is wrong and what to do.
  if (text.trim() === '') {
    throw new InvalidTlsFiles(
      `The TLS ${what} ${file} is empty (was it being written when the power went?): restore it, or start without --tls-cert and --tls-key to serve the local CA's certificate.`,
    );
  }
  return text;
}

/** "error:0480006C:PEM routines::no start line" -> "no start line" */
function openSslReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('::').at(-1) ?? message;
}
