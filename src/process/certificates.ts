import type { Server } from 'node:http';
import type { Config } from '../config/schema.js';
import { AcmeCertificates, type ChallengeResponder } from '../http/tls/acme.js';
import { createAcmeHttpServer } from '../http/tls/acme-http.js';
import { localReissueTime } from '../http/tls/local-ca.js';
import { loadTlsMaterial, type TlsMaterial } from '../http/tls/material.js';
import { runAt, type LongTimer } from '../http/tls/timer.js';
import type { Logger } from '../log/logger.js';
import { supervisorMetrics } from '../metrics.js';
import type { AlpnChallengeDoneMessage, AlpnChallengeMessage, ServedCertificate } from './protocol.js';

/** A failed re-issue of the local certificate is tried again this much later. */
const RETRY_AFTER_FAILURE_MS = 3_600_000;

/** Options of CertificateKeeper. */
export interface CertificateKeeperOptions {
  config: Config;
  logger: Logger;
  /** Hands a new certificate to the workers (the supervisor's reload path). */
  onChange: (served: ServedCertificate) => void;
  /** Sends a message to every worker, and to those started later (tls-alpn-01 challenge certificates). */
  answerAlpnChallenges: (message: AlpnChallengeMessage | AlpnChallengeDoneMessage) => void;
  /** The HTTPS port bound, for the http-01 listener's redirects. */
  httpsPort: () => number;
}

/**
 * The primary's hold on the served certificate: the operator's files; else, with --acme-domain,
 * the ACME certificate (the local CA's standing in until the first is obtained); else the local
 * CA's server certificate, created or re-issued as needed. Reloads on SIGHUP, renews and
 * re-issues by itself, and hands each new certificate to the workers.
 */
export class CertificateKeeper {
  readonly #options: CertificateKeeperOptions;
  readonly #acme: AcmeCertificates | undefined;
  readonly #httpTokens = new Map<string, string>();
  #httpServer: Server | undefined;
  #current: TlsMaterial | undefined;
  #provisional = false;
  #timer: LongTimer | undefined;
  #closed = false;

  constructor(options: CertificateKeeperOptions) {
    this.#options = options;
    const { config, logger } = options;
    const { domains } = config.acme;
    if (domains !== undefined) {
      this.#acme = new AcmeCertificates(
        { ...config.acme, domains, dataDir: config.data.dir },
        {
          logger,
          responder: this.#responder(),
          onCertificate: (material) => this.#use(material, false),
          onFailure: () => supervisorMetrics.acmeOrderFailures.inc(),
        },
      );
    }
  }

  /** The certificate served now. */
  get current(): TlsMaterial | undefined {
    return this.#current;
  }

  /** The certificate to serve at start; rejects when it cannot be read or made. */
  async start(): Promise<ServedCertificate> {
    const { logger, config } = this.#options;
    const stored = await this.#acme?.stored();
    const material = stored ?? (await this.#loadLocalOrOperator());
    this.#provisional = this.#acme !== undefined && stored === undefined;
    this.#current = material;
    this.#logLoaded(material);
    this.#setMetrics(material);
    if (this.#acme) {
      if (this.#provisional) {
        logger.warn(
          { domains: config.acme.domains },
          'ACME: serving the local CA certificate until the first ACME certificate is obtained; /readyz answers 503 meanwhile',
        );
      }
    } else this.#scheduleLocal(material);
    return this.#served(material);
  }

  /**
   * With ACME, once the workers listen: opens the http-01 listener and orders the first
   * certificate, or schedules the renewal of the stored one.
   */
  async startAcme(): Promise<void> {
    if (this.#acme === undefined || this.#closed) return;
    if (this.#options.config.acme.challenge === 'http-01') await this.#listenHttp();
    this.#acme.start(this.#provisional ? undefined : this.#current);
  }

  /** Reads the certificate again (SIGHUP, or the local one falling due); on failure keeps the current one. */
  async reload(): Promise<void> {
    try {
      const stored = await this.#acme?.stored();
      if (this.#acme && stored === undefined && !this.#provisional) return;
      const material = stored ?? (await this.#loadLocalOrOperator());
      this.#use(material, this.#provisional && stored === undefined);
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

  /** Stops the timers and the http-01 listener. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    this.#acme?.close();
    const server = this.#httpServer;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  /** Orders an ACME certificate now, outside the schedule. */
  orderNow(): Promise<void> {
    return this.#acme?.order() ?? Promise.resolve();
  }

  #loadLocalOrOperator(): Promise<TlsMaterial> {
    const { config } = this.#options;
    return loadTlsMaterial({
      ...config.tls,
      dataDir: config.data.dir,
    });
  }

  #use(material: TlsMaterial, provisional: boolean): void {
    const wasProvisional = this.#provisional;
    this.#current = material;
    this.#provisional = provisional;
    for (const change of material.changes) this.#options.logger.info({ cert: material.certPath }, change);
    if (wasProvisional && !provisional) {
      this.#options.logger.info('ACME: serving the ACME certificate; /readyz answers 200 again');
    }
    this.#setMetrics(material);
    this.#options.onChange(this.#served(material));
    if (!this.#acme) this.#scheduleLocal(material);
  }

  #served(material: TlsMaterial): ServedCertificate {
    return { cert: material.cert, key: material.key, provisional: this.#provisional };
  }

  #setMetrics(material: TlsMaterial): void {
    supervisorMetrics.certificateExpiry.set(material.notAfter.getTime() / 1000);
    supervisorMetrics.certificateProvisional.set(this.#provisional ? 1 : 0);
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
  #scheduleLocal(material: TlsMaterial): void {
    this.#timer?.cancel();
    if (this.#closed || material.caPath === undefined) return;
    this.#timer = runAt(localReissueTime(material.notAfter), () => void this.reload());
  }

  #responder(): ChallengeResponder {
    return {
      addHttpToken: (token, keyAuthorization) => this.#httpTokens.set(token, keyAuthorization),
      removeHttpToken: (token) => this.#httpTokens.delete(token),
      // Sent before acme-client asks the CA to validate. With node:cluster's round-robin (its
      // default but on Windows) the primary hands each connection to a worker over this same IPC
      // channel, so the validator's connection reaches a worker after the challenge does.
      addAlpnCertificate: (servername, certificate) =>
        this.#options.answerAlpnChallenges({ type: 'acme-alpn-challenge', servername, ...certificate }),
      removeAlpnCertificate: (servername) =>
        this.#options.answerAlpnChallenges({ type: 'acme-alpn-challenge-done', servername }),
    };
  }

  async #listenHttp(): Promise<void> {
    const { config, logger } = this.#options;
    const server = createAcmeHttpServer({ tokens: this.#httpTokens, httpsPort: this.#options.httpsPort });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.acme.httpPort, config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => logger.error({ err: error }, 'ACME: the http-01 listener failed'));
    this.#httpServer = server;
    logger.info(
      { acmeHttpPort: config.acme.httpPort },
      `ACME: answering http-01 challenges on http://${config.listen.host}:${config.acme.httpPort} (other requests are redirected to HTTPS)`,
    );
  }
}
