import { createHash, webcrypto } from 'node:crypto';
import { createSecureContext, type SecureContext, type TLSSocket, type TlsOptions } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { ALGORITHM, exportPrivateKey, serialNumber } from './local-ca.js';

/** The ALPN protocol of tls-alpn-01 validation connections (RFC 8737). */
export const ACME_TLS_ALPN = 'acme-tls/1';
/** id-pe-acmeIdentifier, the extension holding the key authorization's digest (RFC 8737 section 3). */
const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31';
const DAY_MS = 86_400_000;

/**
 * The self-signed certificate that answers the tls-alpn-01 challenge for `servername`. Its key is
 * ECDSA P-256 like every certificate served beside it (the local CA's and the ACME ones), and its
 * key usage is digitalSignature, which OpenSSL needs to use an ECDSA certificate under TLS 1.2
 * (acme-client's createAlpnCertificate has neither: an RSA key by default, CA key usages).
 */
export async function createChallengeCertificate(
  servername: string,
  keyAuthorization: string,
): Promise<{ cert: string; key: string }> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const digest = createHash('sha256').update(keyAuthorization).digest();
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${servername}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: servername }]),
      // Critical; its value is the key authorization's SHA-256 digest as a DER OCTET STRING
      // (tag 4, length 32).
      new x509.Extension(
        ACME_IDENTIFIER_OID,
        true,
        Buffer.concat([Buffer.from([0x04, digest.length]), digest]),
      ),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  return { cert: cert.toString('pem') + '\n', key: await exportPrivateKey(keys.privateKey) };
}

/**
 * Answers tls-alpn-01 challenges on the HTTPS port: a handshake that offers ALPN `acme-tls/1` for
 * the name of a pending challenge gets that challenge's certificate and negotiates acme-tls/1;
 * every other handshake gets the served certificate and HTTP/1.1.
 *
 * node picks the certificate in SNICallback and the protocol in ALPNCallback, both called with the
 * handshake's TLSSocket as `this`, in OpenSSL's order: under TLS 1.3 ALPN comes first, so the
 * choice is exact (Pebble's validator negotiates TLS 1.3 here). Under TLS 1.2 the certificate is
 * picked before ALPN is known, so while a challenge for a name is pending (the seconds of an
 * order) a TLS 1.2 handshake for that name gets the challenge certificate.
 *
 * The challenge certificate must have the served certificate's key type (both are ECDSA, see
 * createChallengeCertificate): node adds an SNI context's certificate to those the server already
 * has, one per key type, and OpenSSL then sends the one the negotiated signature algorithm calls
 * for, so an RSA challenge certificate beside an ECDSA served one would never be sent.
 */
export class AlpnChallenges {
  readonly #contexts = new Map<string, SecureContext>();
  /** Handshakes whose ALPNCallback chose acme-tls/1. */
  readonly #validations = new WeakSet<TLSSocket>();

  set(servername: string, certificate: { cert: string; key: string }): void {
    this.#contexts.set(servername.toLowerCase(), createSecureContext(certificate));
  }

  delete(servername: string): void {
    this.#contexts.delete(servername.toLowerCase());
  }

  /** The server options that route validation connections. */
  serverOptions(): Pick<TlsOptions, 'ALPNCallback' | 'SNICallback'> {
    const contexts = this.#contexts;
    const validations = this.#validations;
    function ALPNCallback(
      this: TLSSocket,
      { servername, protocols }: { servername: string; protocols: string[] },
    ) {
      if (protocols.includes(ACME_TLS_ALPN) && contexts.has(servername.toLowerCase())) {
        validations.add(this);
        return ACME_TLS_ALPN;
      }
      // With an ALPNCallback node offers nothing by itself: HTTP/1.1 is what this server speaks.
      return protocols.includes('http/1.1') ? 'http/1.1' : undefined;
    }
    function SNICallback(
      this: TLSSocket,
      servername: string,
      callback: (error: Error | null, context?: SecureContext) => void,
    ) {
      const context = contexts.get(servername.toLowerCase());
      // The version is settled before the certificate is picked. Under TLS 1.3 ALPN was chosen
      // already (or not offered: no validation); under TLS 1.2 it comes later.
      const exact = this.getProtocol() === 'TLSv1.3';
      callback(null, validations.has(this) || !exact ? context : undefined);
    }
    return { ALPNCallback, SNICallback };
  }
}
