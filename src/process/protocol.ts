import type { Config } from '../config/schema.js';
import type { LogLinesMessage } from '../log/ipc.js';

/**
 * Messages between the primary and its workers over the node:cluster IPC channel. Every message
 * is an object with a `type`. The supervisor handles the lifecycle and log messages; process/metrics.ts
 * the metrics ones.
 */

/** Primary -> worker: what to serve. Sent once the worker asks for it. */
export interface StartMessage {
  type: 'start';
  config: Config;
  /** The port to listen on: the one already bound when the configured port is 0. */
  port: number;
  tls: ServedCertificate | undefined;
  /** The tls-alpn-01 challenges under way, for a worker started in the middle of an ACME order. */
  alpnChallenges: AlpnChallengeMessage[];
}

/** The certificate workers serve. */
export interface ServedCertificate {
  cert: string;
  key: string;
  /**
   * A stand-in (the local CA's) served until the ACME certificate is obtained: /readyz answers
   * 503 meanwhile.
   */
  provisional: boolean;
}

/** Primary -> worker: a new certificate and key (SIGHUP, a re-issue, an ACME order). */
export interface TlsMessage extends ServedCertificate {
  type: 'tls';
}

/** Primary -> worker: answer tls-alpn-01 validation connections for `servername` with this certificate. */
export interface AlpnChallengeMessage {
  type: 'acme-alpn-challenge';
  servername: string;
  cert: string;
  key: string;
}

/** Primary -> worker: the tls-alpn-01 challenge for `servername` is over. */
export interface AlpnChallengeDoneMessage {
  type: 'acme-alpn-challenge-done';
  servername: string;
}

/** Primary -> worker: finish in-flight requests, close the store and exit 0. */
export interface ShutdownMessage {
  type: 'shutdown';
}

/**
 * Primary -> worker, answering StoppedAcceptingMessage: no new connection reaches this worker now
 * (the shared listener is closed, or other workers take them), so its drain may answer with
 * `Connection: close` and close idle connections.
 */
export interface ConnectionsMayCloseMessage {
  type: 'connections-may-close';
}

/** Primary -> worker: send your metrics registry as JSON, answering with this id. */
export interface MetricsCollectMessage {
  type: 'digestd:metrics:collect';
  id: string;
}

/** Primary -> worker: the aggregated metrics text the worker asked for (or why there is none). */
export interface MetricsScrapedMessage {
  type: 'digestd:metrics:scraped';
  id: string;
  text?: string;
  error?: string;
}

export type PrimaryMessage =
  | StartMessage
  | TlsMessage
  | AlpnChallengeMessage
  | AlpnChallengeDoneMessage
  | ShutdownMessage
  | ConnectionsMayCloseMessage
  | MetricsCollectMessage
  | MetricsScrapedMessage;

/** Worker -> primary: the worker listens for messages and waits for its StartMessage. */
export interface AwaitingStartMessage {
  type: 'awaiting-start';
}

/** How often a worker sends its heartbeat; --worker-timeout is at least four of these. */
export const HEARTBEAT_INTERVAL_MS = 250;

/**
 * Worker -> primary: sent from a timer every HEARTBEAT_INTERVAL_MS, so it stops when the worker's event
 * loop does (stopped, or stuck in a loop); the supervisor's watchdog kills a worker gone silent.
 */
export interface HeartbeatMessage {
  type: 'heartbeat';
}

/**
 * Worker -> primary: draining, this worker has stopped accepting connections (node:cluster's own
 * close message for the shared listener went before this one on the same channel). It waits for
 * ConnectionsMayCloseMessage before telling its clients to close their connections.
 */
export interface StoppedAcceptingMessage {
  type: 'stopped-accepting';
}

/** Worker -> primary: start-up failed for this reason; the worker exits next. */
export interface StartFailedMessage {
  type: 'start-failed';
  reason: string;
  /** Every worker would fail the same way (the port is taken): the supervisor stops at once. */
  permanent: boolean;
}

/** Worker -> primary: this worker's metrics registry as JSON (or why there is none). */
export interface MetricsCollectedMessage {
  type: 'digestd:metrics:collected';
  id: string;
  metrics?: unknown;
  error?: string;
}

/** Worker -> primary: a scrape on the public port; answer with the aggregate of every worker. */
export interface MetricsScrapeMessage {
  type: 'digestd:metrics:scrape';
  id: string;
}

export type WorkerMessage =
  | AwaitingStartMessage
  | HeartbeatMessage
  | StoppedAcceptingMessage
  | StartFailedMessage
  | LogLinesMessage
  | MetricsCollectedMessage
  | MetricsScrapeMessage;

/** True for an object with a string `type`, the shape of every message we exchange. */
export function isMessage(value: unknown): value is { type: string } & Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
  );
}
