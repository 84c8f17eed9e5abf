import { adminTokensOf, writeTokensOf } from '../config/files.js';
import { loadConfig } from '../config/load.js';
import { changedSettings, redactStoreUrl } from '../config/redact.js';
import { createDirectory } from '../directory.js';
import { InvalidConfig, InvalidTlsFiles, StoreRefused } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { LogSink } from '../log/sink.js';
import { tolerateStdioFailures, writeStderr } from '../log/stdio.js';
import { ListenFile } from '../process/listen-file.js';
import { exitAfter, onShutdownSignal } from '../process/shutdown.js';
import { measureFreeSpaceOf } from '../metrics.js';
import { servePrimaryMetrics } from '../process/metrics.js';
import { CertificateKeeper } from '../process/certificates.js';
import { Supervisor } from '../process/supervisor.js';
import { startMetricsListener, type MetricsListener } from '../server.js';
import { isPermanentStoreError, rootMessage, waitForStore } from '../store/startup.js';
import { parseStoreUrl } from '../store/url.js';

/** What to do about a store that refuses us, by its kind. */
const REFUSED_ADVICE = {
  lmdb: 'give a directory this user can create files in, or change its owner or mode',
  postgres: 'check the user, the password and the database in the URL (and pg_hba.conf)',
  redis: 'check the user and the password in the URL',
  'redis-cluster': 'check the user and the password in the URL',
} as const;

/** A URL a person can open: a wildcard bind ([::], 0.0.0.0) is reached as localhost. */
export function openableUrl(bound: string): string {
  const url = new URL(bound);
  if (url.hostname === '[::]' || url.hostname === '0.0.0.0') url.hostname = 'localhost';
  return url.origin;
}

/**
 * `digestd serve [options]`: this process is the primary. It loads the configuration, makes the
 * TLS certificate once, forks `--workers` workers that share the port and supervises them until
 * SIGTERM or SIGINT. Workers run process/worker-main.ts and take their settings from the primary.
 */
export async function serve(argv: readonly string[]): Promise<void> {
  tolerateStdioFailures();
  const config = loadConfig(argv);
  // Settings that need files read are checked here, so a mistake exits 2 instead of crash-looping.
  await writeTokensOf(config.protection);
  await adminTokensOf(config.protection);
  await createDirectory(config.data.dir).catch((error: unknown) => {
    throw new InvalidConfig([`--data-dir: ${(error as Error).message}`]);
  });
  // A person at a terminal reads lines; journald, a pipe or a file get JSON.
  const { format, file } = config.log;
  const pretty = file === undefined && (format === 'pretty' || (format === 'auto' && process.stdout.isTTY));
  const sink = new LogSink({ ...config.log, pretty });
  await sink.ready();
  const logger = createLogger({
    level: config.log.level,
    destination: { write: (line) => sink.write(line) },
  });
  sink.onDropped = (lines, reason) => logger.warn({ droppedLines: lines, reason }, 'log lines dropped');
  logger.info({ config: changedSettings(config), node: process.version }, 'digestd starting');

  /** Ends a start that no retry can fix: one line naming the setting (exit 2, in cli/main.ts). */
  const refuse = async (problem: string): Promise<never> => {
    // On a terminal the log is the same screen: the line on stderr says it once.
    if (!pretty) logger.fatal(problem);
    await sink.close();
    throw new InvalidConfig([problem]);
  };
  const storeFlag = config.store.url === `lmdb:${config.data.dir}` ? '--data-dir' : '--store';
  const shownStore = redactStoreUrl(config.store.url);
  const { waitSeconds } = config.store;
  try {
    await waitForStore(config.store, {
      waitMs: waitSeconds * 1000,
      onRetry: (reason, retryInMs) =>
        logger.warn(
          { store: shownStore, retryInMs },
          `the store ${shownStore} cannot be reached yet (${reason}); trying again in ${(retryInMs / 1000).toFixed(1)} s, for up to ${waitSeconds} s (--store-wait)`,
        ),
    });
  } catch (error) {
    if (error instanceof StoreRefused) {
      const location = parseStoreUrl(config.store.url);
      const what = location.kind === 'lmdb' ? `cannot use ${location.path}` : `${shownStore} refused digestd`;
      await refuse(`${storeFlag}: ${what}: ${error.message}; ${REFUSED_ADVICE[location.kind]}`);
    }
    const problem = `--store: ${shownStore} could not be reached within ${waitSeconds} s (--store-wait): ${rootMessage(error)}`;
    if (!pretty) logger.fatal(problem);
    await sink.close();
    throw new Error(problem, { cause: error });
  }

  let boundPort = config.listen.port;
  /** The bound URL, once every worker listens. */
  let address: string | undefined = undefined;
  const listenFile = new ListenFile(config.data.dir, logger, () =>
    address === undefined
      ? undefined
      : {
          pid: process.pid,
          url: address,
          cert: certificates?.current?.certPath,
          ca: certificates?.current?.caPath,
        },
  );
  const certificates: CertificateKeeper | undefined = config.tls.enabled
    ? new CertificateKeeper({
        config,
        logger,
        onChange: (served) => {
          supervisor.reloadTls(served);
          void listenFile.update();
        },
        answerAlpnChallenges: (message) => supervisor.answerAlpnChallenges(message),
        httpsPort: () => boundPort,
      })
    : undefined;
  const tls = await certificates?.start().catch(async (error: unknown) => {
    if (error instanceof InvalidTlsFiles) return refuse(`--tls-cert, --tls-key: ${error.message}`);
    if (isPermanentStoreError(error)) {
      return refuse(
        `--data-dir: cannot make the local CA in ${config.data.dir}: ${rootMessage(error)}; ${REFUSED_ADVICE.lmdb}`,
      );
    }
    throw error;
  });

  const closeLog = async () => {
    await sink.close();
    // The log itself may be what failed (disk full): say it where an operator will see it, as the
    // log's own kind of line.
    if (sink.dropped.total > 0) {
      createLogger({ level: config.log.level, destination: { write: writeStderr } }).warn(
        { droppedLines: sink.dropped.total, reason: sink.dropped.reason },
        `${sink.dropped.total} log lines were dropped`,
      );
    }
  };
  const fail = (error: Error) => {
    // The supervisor's own stack says nothing; a cause (what ACME answered) does.
    logger.fatal(error.cause === undefined ? {} : { err: error.cause }, error.message);
    writeStderr(`digestd: ${error.message}\n`);
    void certificates?.close();
    void supervisor.stop().finally(() => exitAfter(closeLog, 1));
  };
  measureFreeSpaceOf(config.data.dir);
  // Before forking, so that it sees every worker start listening.
  const primaryMetrics = servePrimaryMetrics({ logger });
  let metricsListener: MetricsListener | undefined;
  const supervisor: Supervisor = new Supervisor({
    config,
    logger,
    sink,
    tls,
    onCrashLoop: fail,
    metrics: primaryMetrics,
  });
  onShutdownSignal(logger, {
    stop: async () => {
      await Promise.all([supervisor.stop(), metricsListener?.close(), certificates?.close()]);
      primaryMetrics.close();
      await listenFile.remove();
    },
    flush: closeLog,
    abort: () => supervisor.kill(),
  });
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the TLS certificate and reopening the log file');
    void sink.reopen().then(() => logger.info('reopened the log file'));
    void certificates?.reload();
  });

  let bound: string;
  try {
    bound = await supervisor.start();
  } catch (error) {
    fail(error as Error);
    return;
  }
  boundPort = Number(new URL(bound).port);
  try {
    await certificates?.startAcme();
  } catch (error) {
    fail(
      new Error(
        `ACME: cannot answer http-01 challenges on port ${config.acme.httpPort}: ${(error as Error).message}`,
        { cause: error },
      ),
    );
    return;
  }
  const metricsPort = config.metrics.port;
  if (metricsPort !== undefined) {
    metricsListener = await startMetricsListener({
      ...config.metrics,
      port: metricsPort,
      logger,
      collect: primaryMetrics.collect,
      shutdownTimeoutMs: config.supervisor.shutdownTimeoutSeconds * 1000,
    });
    logger.info({ metricsAddress: metricsListener.address }, `metrics on ${metricsListener.address}/metrics`);
  }
  address = bound;
  await listenFile.update();
  const url = openableUrl(bound);
  const ca = certificates?.current?.caPath;
  logger.info(
    { address, url, ca, workers: config.supervisor.workers },
    `digestd serving ${url}${ca === undefined ? '' : ` — trust ${ca}`}`,
  );
}
