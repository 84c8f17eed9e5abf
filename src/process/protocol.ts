import type { Config } from '../config.js';
import type { LogLinesMessage } from '../log/ipc.js';

/**
 * Messages between the primary and its workers over the node:cluster IPC channel. Every message
 * is an object with a `type`; types not listed here are handed to the supervisor's message hooks.
 */

/** Primary -> worker: what to serve. Sent once the worker asks for it. */
export interface StartMessage {
  type: 'start';
  config: Config;
  /** The port to listen on: the one already bound when the configured port is 0. */
  port: number;
  tls: { cert: string; key: string } | undefined;
}

/** Primary -> worker: a new certificate and key (SIGHUP). */
export interface TlsMessage {
  type: 'tls';
  cert: string;
  key: string;
}

/** Primary -> worker: finish in-flight requests, close the store and exit 0. */
export interface ShutdownMessage {
  type: 'shutdown';
}

export type PrimaryMessage = StartMessage | TlsMessage | ShutdownMessage;

/** Worker -> primary: the worker listens for messages and waits for its StartMessage. */
export interface AwaitingStartMessage {
  type: 'awaiting-start';
}

/** Worker -> primary: start-up failed for this reason; the worker exits next. */
export interface StartFailedMessage {
  type: 'start-failed';
  reason: string;
}

export type WorkerMessage = AwaitingStartMessage | StartFailedMessage | LogLinesMessage;

/** True for an object with a string `type`, the shape of every message we exchange. */
export function isMessage(value: unknown): value is { type: string } & Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
  );
}
