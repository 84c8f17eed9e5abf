import { X509Certificate } from 'node:crypto';
import { generateSelfSigned } from '../../src/http/tls.js';

/** A self-signed certificate and key in PEM, with its SHA-256 fingerprint as node:tls reports it. */
export interface TestCertificate {
  cert: string;
  key: string;
  fingerprint256: string;
}

/** Makes a self-signed certificate like the server's own, distinguishable by `commonName`. */
export async function makeCertificate(commonName: string): Promise<TestCertificate> {
  const pems = await generateSelfSigned(commonName, 1);
  return {
    cert: pems.cert,
    key: pems.private,
    fingerprint256: new X509Certificate(pems.cert).fingerprint256,
  };
}
