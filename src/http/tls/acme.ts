import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { Agent, get as httpsGet } from 'node:https';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import * as acme from 'acme-client';
import type { Logger } from '../../log/logger.js';
import { createChallengeCertificate } from './alpn-challenges.js';
import { createDirectory } from '../../directory.js';
import { writeFileDurably } from '../../durable-file.js';
import type { TlsMaterial } from './material.js';
import { runAt, type LongTimer } from './timer.js';

const DAY_MS = 86_400_000;
/** The first retry after a failed order waits this long, doubling up to RETRY_MAX_MS. */
export const RETRY_INITIAL_MS = 60_000;
export const RETRY_MAX_MS = 6 * 3_600_000;
/** After the CA says "rate limited", wait at least this long (acme-client already honoured Retry-After). */
const RATE_LIMITED_WAIT_MS = 3_600_000;
/** How long the directory has to answer when a failed order is explained. */
const DIRECTORY_PROBE_MS = 10_000;

/** ACME settings (RFC 8555): which names, from which CA, proven how. */
export interface AcmeOptions {
  /** The names of the certificate; the first is its subject. */
  domains: readonly string[];
  /** Contact address of the account. */
  email?: string | undefined;
  /** The CA's directory URL. */
  directoryUrl: string;
  /** PEM files of CAs to trust for the directory's HTTPS, besides the system's. */
  caCertFiles?: readonly string[] | undefined;
  challenge: 'http-01' | 'tls-alpn-01';
  /** Renew this many days before the end (at most half the certificate's lifetime). */
  renewBeforeDays: number;
  /** The account key and certificate live in <dataDir>/acme/<directory>/. */
  dataDir: string;
}

/** Where challenges are answered: the http-01 listener, or the workers' HTTPS port for tls-alpn-01. */
export interface ChallengeResponder {
  addHttpToken(token: string, keyAuthorization: string): void;
  removeHttpToken(token: string): void;
  addAlpnCertificate(servername: string, certificate: { cert: string; key: string }): void;
  removeAlpnCertificate(servername: string): void;
}

/** What AcmeCertificates tells its owner. */
export interface AcmeEvents {
  logger: Logger;
  responder: ChallengeResponder;
  /** A new certificate was obtained and stored: serve it. */
  onCertificate: (material: TlsMaterial) => void;
  /** An order failed; the current certificate stays. */
  onFailure?: (error: Error) => void;
}

/** The files of one ACME directory's account and certificate. */
export function acmePaths(options: Pick<AcmeOptions, 'dataDir' | 'directoryUrl'>) {
  const url = new URL(options.directoryUrl);
  // One folder per directory: a staging certificate never replaces a production one.
  const slug = `${url.hostname.replace(/[^a-z0-9.-]/gi, '_')}-${createHash('sha256').update(options.directoryUrl).digest('hex').slice(0, 8)}`;
  const directory = path.join(options.dataDir, 'acme', slug);
  return {
    directory,
    accountKey: path.join(directory, 'account-key.pem'),
    cert: path.join(directory, 'cert.pem'),
    key: path.join(directory, 'key.pem'),
  };
}

/** When a certificate valid from `notBefore` to `notAfter` is renewed. */
export function renewalTime(notBefore: Date, notAfter: Date, renewBeforeDays: number): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return new Date(notAfter.getTime() - Math.min(renewBeforeDays * DAY_MS, lifetime / 2));
}

/**
 * Obtains a certificate for the configured domains from an ACME CA with acme-client, stores it
 * with its key under the data directory, and renews it before it expires. A failed order keeps
 * the current certificate and is retried with backoff (acme-client itself retries 429 and 5xx
 * answers after their Retry-After).
 */
export class AcmeCertificates {
  readonly #options: AcmeOptions;
  readonly #events: AcmeEvents;
  readonly #paths: ReturnType<typeof acmePaths>;
  /** The HTTPS agent of every request to the CA (its trusted CAs). */
  readonly #agent: Agent;
  #timer: LongTimer | undefined;
  #retryMs = RETRY_INITIAL_MS;
  #closed = false;
  #ordering: Promise<void> | undefined;
  /** Failed orders since the last success. */
  failures = 0;

  constructor(options: AcmeOptions, events: AcmeEvents) {
    this.#options = options;
    this.#events = events;
    this.#paths = acmePaths(options);
    acme.setLogger((message) => events.logger.debug({ acme: true }, message));
    // acme-client retries 429, 5xx and network errors after Retry-After (else 5 s, 10 s, ...);
    // three tries, then this class's own backoff takes over.
    (
      acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }
    ).acmeSettings.retryMaxAttempts = 3;
    this.#agent = new Agent({
      // Read once here, so a wrong path fails the start instead of every order.
      ca: [...rootCertificates, ...(options.caCertFiles ?? []).map((file) => readFileSync(file, 'utf8'))],
    });
    acme.axios.defaults.httpsAgent = this.#agent;
  }

  /**
   * The stored certificate when it names every configured domain and has not expired. A pair
   * found empty, cut short or not matching (a power cut while it was written) is ordered again,
   * said in one line.
   */
  async stored(now = new Date()): Promise<TlsMaterial | undefined> {
    let cert: string;
    let key: string;
    try {
      [cert, key] = await Promise.all([
        readFile(this.#paths.cert, 'utf8'),
        readFile(this.#paths.key, 'utf8'),
      ]);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(cert);
      if (!leaf.checkPrivateKey(createPrivateKey(key)))
        throw new Error('the key does not belong to the certificate');
    } catch (error) {
      this.#events.logger.warn(
        { cert: this.#paths.cert, key: this.#paths.key },
        `ACME: the stored certificate ${this.#paths.cert} and key ${this.#paths.key} cannot be used (${(error as Error).message}); ordering a new one`,
      );
      return undefined;
    }
    if (new Date(leaf.validTo) <= now) return undefined;
    if (!this.#options.domains.every((domain) => leaf.checkHost(domain) !== undefined)) return undefined;
    return this.#material(cert, key);
  }

  /**
   * Schedules the first order now, or the renewal of `current` (the stored certificate) at its
   * renewal time.
   */
  start(current: TlsMaterial | undefined): void {
    if (current === undefined) this.#scheduleAt(new Date());
    else this.#scheduleRenewal(current.cert);
  }

  /** Cancels the timer; an order under way finishes but is not retried. */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
  }

  /** Orders a certificate now (the timer calls it; tests too). */
  order(): Promise<void> {
    this.#ordering ??= this.#order().finally(() => (this.#ordering = undefined));
    return this.#ordering;
  }

  async #order(): Promise<void> {
    const { logger } = this.#events;
    const { domains, challenge } = this.#options;
    logger.info(
      { domains, directory: this.#options.directoryUrl, challenge },
      `ACME: ordering a certificate for ${domains.join(', ')}`,
    );
    try {
      const client = new acme.Client({
        directoryUrl: this.#options.directoryUrl,
        accountKey: await this.#accountKey(),
      });
      const [key, csr] = await acme.crypto.createCsr(
        { commonName: domains[0], altNames: [...domains] },
        await acme.crypto.createPrivateEcdsaKey(),
      );
      const cert = await client.auto({
        csr,
        email: this.#options.email,
        termsOfServiceAgreed: true,
        challengePriority: [challenge],
        // acme-client would first fetch the challenge itself through the system resolver; the CA's
        // own check is the one that counts, and the host may not resolve its own public name.
        skipChallengeVerification: true,
        challengeCreateFn: async (authz, offered, keyAuthorization) => {
          if (offered.type === 'http-01')
            this.#events.responder.addHttpToken(offered.token, keyAuthorization);
          else if ((offered.type as string) === 'tls-alpn-01') {
            this.#events.responder.addAlpnCertificate(
              authz.identifier.value,
              await createChallengeCertificate(authz.identifier.value, keyAuthorization),
            );
          }
        },
        challengeRemoveFn: (authz, offered) => {
          if (offered.type === 'http-01') this.#events.responder.removeHttpToken(offered.token);
          else if ((offered.type as string) === 'tls-alpn-01')
            this.#events.responder.removeAlpnCertificate(authz.identifier.value);
          return Promise.resolve();
        },
      });
      await createDirectory(this.#paths.directory, 0o700);
      await writeFileDurably(this.#paths.key, key.toString(), 0o600);
      await writeFileDurably(this.#paths.cert, cert, 0o644);
      const material = this.#material(cert, key.toString());
      material.changes.push(
        `ACME: obtained a certificate for ${domains.join(', ')} valid until ${material.notAfter.toISOString()}, stored at ${this.#paths.cert}`,
      );
      this.failures = 0;
      this.#retryMs = RETRY_INITIAL_MS;
      this.#events.onCertificate(material);
      this.#scheduleRenewal(cert);
    } catch (error) {
      this.failures += 1;
      const reason = await this.#explain(error);
      const rateLimited = /rate ?limit|too many/i.test(reason.message);
      const waitMs = Math.max(this.#retryMs, rateLimited ? RATE_LIMITED_WAIT_MS : 0);
      this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
      logger.error(
        { err: reason, failures: this.failures, retryInMs: waitMs },
        `ACME: the order failed (${reason.message}); keeping the current certificate, retrying in ${Math.round(waitMs / 1000)} s`,
      );
      this.#events.onFailure?.(reason);
      this.#scheduleAt(new Date(Date.now() + waitMs));
    }
  }

  /**
   * The error a failed order logs. When the directory does not answer, that is the cause, said in
   * one sentence with the URL: acme-client then throws only a TypeError of its own (its retry
   * handler reads the HTTP response that a network error does not have).
   */
  async #explain(error: unknown): Promise<Error> {
    const reason = error instanceof Error ? error : new Error(String(error));
    const url = this.#options.directoryUrl;
    const problem = await directoryProblem(url, this.#agent);
    if (problem === undefined) return reason;
    return new Error(`cannot reach the ACME directory ${url}: ${problem}`, { cause: reason });
  }

  #material(cert: string, key: string): TlsMaterial {
    return {
      cert,
      key,
      certPath: this.#paths.cert,
      keyPath: this.#paths.key,
      caPath: undefined,
      notAfter: new Date(new X509Certificate(cert).validTo),
      changes: [],
    };
  }

  #scheduleRenewal(cert: string): void {
    const leaf = new X509Certificate(cert);
    const at = renewalTime(new Date(leaf.validFrom), new Date(leaf.validTo), this.#options.renewBeforeDays);
    this.#events.logger.info(
      { renewAt: at, notAfter: new Date(leaf.validTo) },
      `ACME: renewing the certificate at ${at.toISOString()}`,
    );
    this.#scheduleAt(at);
  }

  #scheduleAt(at: Date): void {
    this.#timer?.cancel();
    if (this.#closed) return;
    this.#timer = runAt(at, () => void this.order());
  }

  /**
   * The account key, created on first use: the same account on every restart. A key found empty
   * or cut short (a power cut while it was written) is replaced, said in one line: the account it
   * named cannot be used without it.
   */
  async #accountKey(): Promise<Buffer> {
    try {
      const stored = await readFile(this.#paths.accountKey);
      try {
        createPrivateKey(stored);
        return stored;
      } catch (error) {
        this.#events.logger.warn(
          { accountKey: this.#paths.accountKey },
          `ACME: the account key ${this.#paths.accountKey} cannot be read (${stored.length === 0 ? 'it is empty' : (error as Error).message}); creating a new account`,
        );
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    await createDirectory(this.#paths.directory, 0o700);
    const key = await acme.crypto.createPrivateEcdsaKey();
    await writeFileDurably(this.#paths.accountKey, key.toString(), 0o600);
    return key;
  }
}

/** Why the directory does not answer 200 to a GET, or undefined when it does. */
function directoryProblem(url: string, agent: Agent): Promise<string | undefined> {
  return new Promise((resolve) => {
    const plain = new URL(url).protocol === 'http:';
    const options = { agent: plain ? undefined : agent, timeout: DIRECTORY_PROBE_MS };
    const request = (plain ? httpGet : httpsGet)(url, options, (response) => {
      response.resume();
      resolve(response.statusCode === 200 ? undefined : `it answers HTTP ${response.statusCode}`);
    });
    request.on('timeout', () =>
      request.destroy(new Error(`no answer within ${DIRECTORY_PROBE_MS / 1000} s`)),
    );
    // Every address refused: node's AggregateError has no message of its own, its errors do.
    request.on('error', (error) =>
      resolve(
        error instanceof AggregateError
          ? (error.errors as Error[]).map((each) => each.message).join('; ')
          : error.message,
      ),
    );
  });
}
