import type { Server as HttpsServer } from 'node:https';
import type { FastifyInstance } from 'fastify';
import { secureContextOptions } from '../http/connection.js';
import { AlpnChallenges } from '../http/tls/alpn-challenges.js';
import { IpcLogDestination, type LogLinesMessage } from '../log/ipc.js';
import { createLogger, type Logger } from '../log/logger.js';
import { tolerateStdioFailures, writeStderr } from '../log/stdio.js';
import { addressUrl, drain, listen } from '../http/listen.js';
import { freezeConfig } from '../config/load.js';
import { ListenFailed } from '../errors.js';
import { createServer } from '../server.js';
import { answerMetricsCollection, metricsText, receiveScrapedMetrics } from './metrics.js';
import {
  HEARTBEAT_INTERVAL_MS,
  isMessage,
  type AlpnChallengeMessage,
  type PrimaryMessage,
  type StartMessage,
  type WorkerMessage,
} from './protocol.js';
import { exitAfter, onShutdownSignal, type ShutdownTrigger } from './shutdown.js';

/** "message: cause: cause's cause", for a one-line reason. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let current: unknown = error; current !== undefined && parts.length < 5;) {
    if (current instanceof Error) {
      parts.push(current.message);
      current = current.cause;
    } else {
      parts.push(typeof current === 'string' ? current : JSON.stringify(current));
      break;
    }
  }
  return parts.join(': ');
}

/**
 * How long a draining worker waits for the primary's word that no new connection can reach it,
 * should the primary not answer (busy, or gone).
 */
const LISTENER_CLOSED_WAIT_MS = 2000;

function sendToPrimary(message: WorkerMessage, callback?: (error: Error | null) => void): void {
  if (process.send === undefined) throw new Error('a worker needs the IPC channel of node:cluster');
  process.send(message, undefined, {}, callback ?? (() => {}));
}

/**
 * The body of a worker process forked by the supervisor: asks the primary for its configuration,
 * opens the store, listens on the shared port and serves until told to stop. Its log lines go to
 * the primary over IPC. An uncaught exception or unhandled rejection is logged with its stack and
 * the worker exits 1, to be replaced: it never keeps serving in an unknown state.
 */
export function runClusterWorker(): void {
  tolerateStdioFailures();
  const destination = new IpcLogDestination({
    send: (message: LogLinesMessage, callback) => sendToPrimary(message, callback),
  });
  const flush = () => new Promise<void>((resolve) => destination.flush(() => resolve()));
  let logger: Logger | undefined;
  let app: FastifyInstance | undefined;
  let shutdown: ShutdownTrigger | undefined;
  /** Serving a stand-in until the ACME certificate comes: /readyz answers 503. */
  let provisional = false;
  let alpnChallenges: AlpnChallenges | undefined;
  /** Resolves the drain's wait for ConnectionsMayCloseMessage. */
  let connectionsMayClose: (() => void) | undefined;
  const listenerClosed = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, LISTENER_CLOSED_WAIT_MS);
      connectionsMayClose = () => {
        clearTimeout(timer);
        resolve();
      };
      if (process.connected) sendToPrimary({ type: 'stopped-accepting' });
      else connectionsMayClose();
    });

  const crash = (error: unknown, origin: string) => {
    if (logger) logger.fatal({ err: error, origin }, `${origin}: the worker exits and will be replaced`);
    else writeStderr(`digestd worker ${process.pid}: ${origin}: ${describeError(error)}\n`);
    exitAfter(flush, 1);
  };
  // Without an unhandledRejection listener Node reports those here too, with origin 'unhandledRejection'.
  process.on('uncaughtException', crash);
  // A timer, so the heartbeats stop when this event loop does: the primary's watchdog then
  // replaces the worker. Unref'd: it never keeps an exiting worker alive.
  setInterval(() => {
    if (process.connected) sendToPrimary({ type: 'heartbeat' });
  }, HEARTBEAT_INTERVAL_MS).unref();
  // The primary coordinates reloads; a SIGHUP meant for the process group must not kill a worker.
  process.on('SIGHUP', () => {});
  // Until it serves, a worker has nothing to drain: a SIGINT or SIGTERM (often the group's copy
  // of a Ctrl-C during start-up) ends it at once, with status 0 like any requested stop.
  const beforeServing = () => exitAfter(flush, 0);
  process.on('SIGINT', beforeServing);
  process.on('SIGTERM', beforeServing);

  const answerAlpnChallenge = (challenge: AlpnChallengeMessage) => {
    alpnChallenges?.set(challenge.servername, challenge);
    logger?.info(
      { servername: challenge.servername, answering: alpnChallenges !== undefined },
      'ACME: answering the tls-alpn-01 challenge',
    );
  };

  const start = async (message: StartMessage) => {
    const config = freezeConfig(message.config);
    provisional = message.tls?.provisional ?? false;
    logger = createLogger({ level: config.log.level, destination });
    const workerLogger = logger;
    if (config.acme.domains !== undefined && config.acme.challenge === 'tls-alpn-01') {
      alpnChallenges = new AlpnChallenges();
    }
    // Challenges of an order under way while this worker started: the CA may validate here.
    for (const challenge of message.alpnChallenges) answerAlpnChallenge(challenge);
    setInterval(() => reportDrops(workerLogger), 10_000).unref();
    try {
      ({ app } = await createServer(config, {
        logger,
        https: message.tls && {
          cert: message.tls.cert,
          key: message.tls.key,
          serverOptions: alpnChallenges?.serverOptions(),
        },
        notReady: () =>
          provisional ? 'no ACME certificate yet: serving the local CA certificate meanwhile' : undefined,
        collectMetrics: () => metricsText(),
      }));
      const serving = app;
      process.off('SIGINT', beforeServing);
      process.off('SIGTERM', beforeServing);
      shutdown = onShutdownSignal(logger, {
        stop: () =>
          drain(serving, {
            timeoutMs: config.supervisor.shutdownTimeoutSeconds * 1000,
            listenerClosed,
            onTimeout: (unanswered) =>
              workerLogger.warn({ unanswered }, 'shutdown timeout: closing the connections still open'),
          }),
        flush,
        // A signal to the process group (Ctrl-C, kill -- -PGID) reaches the worker and the primary,
        // whose shutdown message follows in either order: all of it is one drain. A second Ctrl-C
        // reaches the primary too, which then kills the workers at once.
        repeatedSignal: 'ignore',
      });
      const bound = await listen(app, { ...config.listen, port: message.port });
      logger.debug(`worker listening at ${addressUrl(bound, message.tls !== undefined)}`);
    } catch (error) {
      const permanent = error instanceof ListenFailed;
      // A taken port is a fact about the machine, not a bug: its one sentence is the whole story.
      if (permanent) logger.fatal(`the worker could not start: ${error.message}`);
      else logger.fatal({ err: error }, 'the worker could not start');
      sendToPrimary({
        type: 'start-failed',
        reason: permanent ? error.message : describeError(error),
        permanent,
      });
      exitAfter(flush, 1);
    }
  };

  const reportDrops = (log: Logger) =>
    destination.dropped.report((lines, reason) =>
      log.warn({ droppedLines: lines, reason }, `log lines dropped: ${reason}`),
    );

  process.on('message', (message: unknown) => {
    if (!isMessage(message)) return;
    const command = message as PrimaryMessage;
    switch (command.type) {
      case 'start':
        if (logger === undefined) void start(command);
        break;
      case 'tls':
        if (app !== undefined && logger !== undefined) {
          try {
            (app.server as HttpsServer).setSecureContext(secureContextOptions(command));
            provisional = command.provisional;
            logger.info('reloaded the TLS certificate');
          } catch (error) {
            logger.error({ err: error }, 'could not apply the reloaded TLS certificate; keeping the old one');
          }
        }
        break;
      case 'acme-alpn-challenge':
        answerAlpnChallenge(command);
        break;
      case 'acme-alpn-challenge-done':
        alpnChallenges?.delete(command.servername);
        break;
      case 'shutdown':
        if (shutdown) shutdown('asked by the primary');
        else exitAfter(flush, 0);
        break;
      case 'connections-may-close':
        connectionsMayClose?.();
        break;
      case 'digestd:metrics:collect':
        answerMetricsCollection(command);
        break;
      case 'digestd:metrics:scraped':
        receiveScrapedMetrics(command);
        break;
    }
  });
  sendToPrimary({ type: 'awaiting-start' });
}
