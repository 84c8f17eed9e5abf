import type { Config } from '../config.js';
import { localReissueTime } from '../http/tls/local-ca.js';
import { loadTlsMaterial, type TlsMaterial } from '../http/tls/material.js';
import { runAt, type LongTimer } from '../http/tls/timer.js';
import type { Logger } from '../log/logger.js';

/** A failed re-issue of the local certificate is tried again this much later. */
const RETRY_AFTER_FAILURE_MS = 3_600_000;

/** Options of CertificateKeeper. */
export interface CertificateKeeperOptions {
  config: Config;
  logger: Logger;
  /** Hands a new certificate to the workers (the supervisor's reload path). */
  onChange: (material: TlsMaterial) => void;
}

/**
 * The primary's hold on the served certificate: loads it at start (the operator's files, or the
 * local CA's server certificate, created or re-issued as needed), reloads it on SIGHUP, and
 * re-issues the local certificate before it expires, handing each new one to the workers.
 */
export class CertificateKeeper {
  readonly #options: CertificateKeeperOptions;
  #current: TlsMaterial | undefined;
  #timer: LongTimer | undefined;
  #closed = false;

  constructor(options: CertificateKeeperOptions) {
    this.#options = options;
  }

  /** The certificate served now. */
  get current(): TlsMaterial | undefined {
    return this.#current;
  }

  /** Loads the certificate to serve at start; rejects when it cannot be read or made. */
  async start(): Promise<TlsMaterial> {
    const material = await this.#load();
    this.#current = material;
    this.#logLoaded(material);
    this.#schedule(material);
    return material;
  }

  /** Reads the certificate again (SIGHUP, or the local one falling due); on failure keeps serving the current one. */
  async reload(): Promise<void> {
    try {
      this.#use(await this.#load());
    } catch (error) {
      this.#options.logger.error(
        { err: error },
        'could not reload the TLS certificate; keeping the current one',
      );
      if (this.#current?.caPath !== undefined && !this.#closed) {
        this.#timer?.cancel();
        this.#timer = runAt(new Date(Date.now() + RETRY_AFTER_FAILURE_MS), () => void this.reload());
      }
    }
  }

  /** Cancels the renewal timer. */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
  }

  #load(): Promise<TlsMaterial> {
    const { config } = this.#options;
    return loadTlsMaterial({ certPath: config.tlsCert, keyPath: config.tlsKey, dataDir: config.dataDir });
  }

  #use(material: TlsMaterial): void {
    this.#current = material;
    for (const change of material.changes) this.#options.logger.info({ cert: material.certPath }, change);
    this.#options.onChange(material);
    this.#schedule(material);
  }

  #logLoaded(material: TlsMaterial): void {
    const { logger } = this.#options;
    for (const change of material.changes) logger.info({ cert: material.certPath }, change);
    const fields = {
      cert: material.certPath,
      key: material.keyPath,
      ca: material.caPath,
      notAfter: material.notAfter,
    };
    if (material.caPath === undefined) logger.info(fields, `TLS certificate ${material.certPath}`);
    else {
      logger.info(
        fields,
        `TLS certificate ${material.certPath} signed by the local CA ${material.caPath}: clients trust that file (curl --cacert ${material.caPath})`,
      );
    }
  }

  /** The local CA's certificate is re-issued by the primary itself; the operator's files are the operator's. */
  #schedule(material: TlsMaterial): void {
    this.#timer?.cancel();
    if (this.#closed || material.caPath === undefined) return;
    this.#timer = runAt(localReissueTime(material.notAfter), () => void this.reload());
  }
}
