import { X509Certificate } from 'node:crypto';
import { generate } from 'selfsigned';

/** A self-signed certificate and key in PEM, with its SHA-256 fingerprint as node:tls reports it. */
export interface TestCertificate {
  cert: string;
  key: string;
  fingerprint256: string;
}

/** Makes a self-signed certificate for localhost and 127.0.0.1, distinguishable by `commonName`. */
export async function makeCertificate(commonName: string): Promise<TestCertificate> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate: new Date(notBeforeDate.getTime() + 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyCertSign: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  return {
    cert: pems.cert,
    key: pems.private,
    fingerprint256: new X509Certificate(pems.cert).fingerprint256,
  };
}
