import { createSecureContext, type SecureContext, type TLSSocket, type TlsOptions } from 'node:tls';

/** The ALPN protocol of tls-alpn-01 validation connections (RFC 8737). */
export const ACME_TLS_ALPN = 'acme-tls/1';

/**
 * Answers tls-alpn-01 challenges on the HTTPS port: a connection that asks for ALPN `acme-tls/1`
 * with the name of a pending challenge gets that challenge's certificate; every other connection
 * gets the served certificate. Under TLS 1.3 node calls ALPNCallback before SNICallback, so the
 * choice is exact. Under TLS 1.2 (which validators such as Pebble's use) OpenSSL asks for the
 * certificate before ALPN is known: while a challenge for that name is pending (seconds, during
 * an order) a TLS 1.2 handshake (or one without ALPN) for that name gets the challenge certificate.
 */
export class AlpnChallenges {
  readonly #contexts = new Map<string, SecureContext>();
  readonly #validations = new WeakSet<TLSSocket>();
  /** Handshakes whose ALPN was chosen already when the certificate is picked (TLS 1.3). */
  readonly #negotiated = new WeakSet<TLSSocket>();

  set(servername: string, certificate: { cert: string; key: string }): void {
    this.#contexts.set(servername.toLowerCase(), createSecureContext(certificate));
  }

  delete(servername: string): void {
    this.#contexts.delete(servername.toLowerCase());
  }

  /**
   * The server options that route validation connections. node calls both with the handshake's
   * TLSSocket as `this`.
   */
  serverOptions(): Pick<TlsOptions, 'ALPNCallback' | 'SNICallback'> {
    const contexts = this.#contexts;
    const validations = this.#validations;
    const negotiated = this.#negotiated;
    function ALPNCallback(
      this: TLSSocket,
      { servername, protocols }: { servername: string; protocols: string[] },
    ) {
      negotiated.add(this);
      if (protocols.includes(ACME_TLS_ALPN) && contexts.has(servername.toLowerCase())) {
        validations.add(this);
        return ACME_TLS_ALPN;
      }
      // Without ALPNCallback the server ignores ALPN; with it, HTTP/1.1 is what it serves.
      return protocols.includes('http/1.1') ? 'http/1.1' : undefined;
    }
    function SNICallback(
      this: TLSSocket,
      servername: string,
      callback: (error: Error | null, context?: SecureContext) => void,
    ) {
      const context = contexts.get(servername.toLowerCase());
      // ALPN already chosen (TLS 1.3): exact. Not yet (TLS 1.2): the pending challenge wins.
      callback(null, validations.has(this) || !negotiated.has(this) ? context : undefined);
    }
    return {
      ALPNCallback,
      SNICallback,
    };
  }
}
