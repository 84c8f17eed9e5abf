import { supervisorMetrics } from '../metrics.js';
import cluster, { type Address, type Worker } from 'node:cluster';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { LogSink } from '../log/sink.js';
import { WorkerOutput } from '../log/worker-output.js';
import type { PrimaryMetrics } from './metrics.js';
import {
  HEARTBEAT_INTERVAL_MS,
  isMessage,
  type AlpnChallengeDoneMessage,
  type AlpnChallengeMessage,
  type MetricsCollectedMessage,
  type MetricsScrapeMessage,
  type PrimaryMessage,
  type ServedCertificate,
} from './protocol.js';

/** Restart delays: the first restart waits this long, doubling on each crash up to the maximum. */
export const BACKOFF_INITIAL_MS = 100;
export const BACKOFF_MAX_MS = 10_000;
/** A worker that stayed up this long restarts its slot's backoff from the initial delay. */
export const BACKOFF_RESET_AFTER_MS = 30_000;
/** Workers of one slot dying this many times in a row before listening is a crash loop. */
export const START_FAILURES_BEFORE_GIVING_UP = 5;
/** The workers' entry point, beside this file (in dist/ once built). */
const WORKER_MAIN = fileURLToPath(new URL('./worker-main.js', import.meta.url));
/**
 * How long a worker that stopped accepting alone waits before it may close its connections, while
 * another still accepts: a signal to the whole group reaches every worker, each a little later.
 */
const LONE_DRAIN_WAIT_MS = 250;
/** Grace on top of --shutdown-timeout before workers that have not exited are killed. */
const SHUTDOWN_GRACE_MS = 5_000;

/** Options of the supervisor. */
export interface SupervisorOptions {
  config: Config;
  logger: Logger;
  /** Receives every worker's log lines; the primary is the one writer of the log. */
  sink: LogSink;
  tls: ServedCertificate | undefined;
  /**
   * Called when workers keep dying before they listen after start() resolved (start() rejects
   * instead while starting). The caller stops and exits non-zero.
   */
  onCrashLoop: (error: Error) => void;
  /** Answers the workers' metrics messages (process/metrics.ts servePrimaryMetrics). */
  metrics: Pick<PrimaryMetrics, 'receive'>;
}

/** A worker slot: one of the N workers, replaced when it dies. */
interface Slot {
  index: number;
  worker: Worker | undefined;
  /** When the current worker started listening. */
  listeningSince: number | undefined;
  backoffMs: number;
  startFailures: number;
  lastFailure: string | undefined;
  /** The last worker failed in a way a restart cannot fix (its port is taken). */
  failedForGood: boolean;
  restartTimer: NodeJS.Timeout | undefined;
  /** The current worker has been told which port to listen on. */
  startSent: boolean;
  /**
   * When the current worker last sent anything (performance.now()), or undefined until it listens:
   * start-up evaluates most modules at once, which on a starved machine can hold a loop for long.
   */
  lastHeardAt: number | undefined;
  /** The watchdog has killed the current worker (its exit is still to come). */
  timedOut: boolean;
  /** The current worker is draining: it no longer accepts connections. */
  stoppedAccepting: boolean;
  /** ... and has been told that no new connection can reach it (ConnectionsMayCloseMessage). */
  connectionsMayClose: boolean;
}

/**
 * The primary process: forks `config.supervisor.workers` workers that share the port
 * (node:cluster), replaces any that dies with exponential backoff, gives up on a crash loop,
 * relays reloads and shutdowns, and writes every worker's log lines to the one log sink.
 */
export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #slots: Slot[];
  #tls: ServedCertificate | undefined;
  /** The tls-alpn-01 challenges under way, by server name: a worker started meanwhile gets them too. */
  readonly #alpnChallenges = new Map<string, AlpnChallengeMessage>();
  /**
   * The port workers are told to listen on. node:cluster shares one listening socket per
   * (address, port) as asked, so while any worker is up every new one must ask for the same value;
   * once none is, a replacement asks for the port bound before, so port 0 does not move.
   */
  #listenPort: number;
  #boundPort: number | undefined;
  #address: string | undefined;
  #stopping = false;
  #started = false;
  #startWaiter: { resolve: (address: string) => void; reject: (error: Error) => void } | undefined;
  #exitWaiters: (() => void)[] = [];
  readonly #workerOutput: WorkerOutput;
  #watchdog: NodeJS.Timeout | undefined;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#workerOutput = new WorkerOutput({ logger: options.logger });
    this.#tls = options.tls && {
      cert: options.tls.cert,
      key: options.tls.key,
      provisional: options.tls.provisional,
    };
    this.#listenPort = options.config.listen.port;
    this.#slots = Array.from({ length: options.config.supervisor.workers }, (_, index) => ({
      index,
      worker: undefined,
      listeningSince: undefined,
      backoffMs: BACKOFF_INITIAL_MS,
      startFailures: 0,
      failedForGood: false,
      lastFailure: undefined,
      restartTimer: undefined,
      startSent: false,
      lastHeardAt: undefined,
      timedOut: false,
      stoppedAccepting: false,
      connectionsMayClose: false,
    }));
  }

  /** Forks the workers; resolves with the base URL once every one of them listens. */
  start(): Promise<string> {
    // Structured clone instead of JSON: batches of log lines (full of quotes) cross the channel
    // as plain copies instead of being escaped by the worker and parsed again by the primary.
    // Workers run their own entry point, not the command line the primary was started with.
    // Their stdout and stderr are pipes to the primary, which logs what arrives there as JSON.
    cluster.setupPrimary({
      serialization: 'advanced',
      exec: WORKER_MAIN,
      args: [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.#startWatchdog();
    return new Promise((resolve, reject) => {
      this.#startWaiter = { resolve, reject };
      for (const slot of this.#slots) this.#fork(slot);
    });
  }

  /** The live workers (for aggregating per-worker state such as metrics). */
  workers(): Worker[] {
    return this.#slots.flatMap((slot) => (slot.worker ? [slot.worker] : []));
  }

  /** Sends a message to every live worker. */
  broadcast(message: PrimaryMessage): void {
    for (const worker of this.workers()) {
      if (worker.isConnected()) worker.send(message);
    }
  }

  /**
   * Starts or ends answering a tls-alpn-01 challenge in every worker, and in the workers started
   * before it ends: the CA's validation may reach a worker that replaced one during the order.
   */
  answerAlpnChallenges(message: AlpnChallengeMessage | AlpnChallengeDoneMessage): void {
    if (message.type === 'acme-alpn-challenge') this.#alpnChallenges.set(message.servername, message);
    else this.#alpnChallenges.delete(message.servername);
    this.broadcast(message);
  }

  /** Hands a reloaded certificate to every worker and to the workers started from now on. */
  reloadTls(served: ServedCertificate): void {
    this.#tls = { cert: served.cert, key: served.key, provisional: served.provisional };
    this.broadcast({ type: 'tls', ...this.#tls });
  }

  /**
   * Asks every worker to finish its in-flight requests and exit; resolves once all have exited.
   * Workers still running after --shutdown-timeout plus a grace period are killed.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const slot of this.#slots) clearTimeout(slot.restartTimer);
    this.broadcast({ type: 'shutdown' });
    const killTimer = setTimeout(
      () => {
        this.#options.logger.warn('workers did not stop in time: killing them');
        this.kill();
      },
      this.#options.config.supervisor.shutdownTimeoutSeconds * 1000 + SHUTDOWN_GRACE_MS,
    );
    await new Promise<void>((resolve) => {
      this.#exitWaiters.push(resolve);
      this.#checkAllExited();
    });
    clearTimeout(killTimer);
    this.#workerOutput.close();
    clearInterval(this.#watchdog);
  }

  /**
   * Kills a worker whose event loop has not answered for --worker-timeout (SIGSTOP, an endless
   * loop): it holds its connections and would never recover by itself. Its exit is then handled
   * as any crash, so it is replaced (while draining it is not, and the drain goes on without it).
   */
  #startWatchdog(): void {
    const timeoutMs = this.#options.config.supervisor.workerTimeoutMs;
    if (timeoutMs === 0) return;
    let lastCheckAt = performance.now();
    this.#watchdog = setInterval(() => {
      const now = performance.now();
      // This process's own loop was held up (a long scrape, the machine swapping): the workers'
      // heartbeats are waiting unread, so their silence says nothing this round.
      const primaryLate = now - lastCheckAt > HEARTBEAT_INTERVAL_MS + timeoutMs / 2;
      lastCheckAt = now;
      for (const slot of this.#slots) {
        if (slot.worker === undefined || slot.lastHeardAt === undefined || slot.timedOut) continue;
        if (primaryLate) {
          slot.lastHeardAt = now;
          continue;
        }
        const silentForMs = Math.round(now - slot.lastHeardAt);
        if (silentForMs <= timeoutMs) continue;
        slot.timedOut = true;
        supervisorMetrics.workerTimeouts.inc();
        this.#options.logger.error(
          {
            slot: slot.index,
            worker: slot.worker.id,
            workerPid: slot.worker.process.pid,
            silentForMs,
            workerTimeoutMs: timeoutMs,
          },
          `worker's event loop did not answer for ${silentForMs} ms (--worker-timeout ${timeoutMs}): killing it with SIGKILL`,
        );
        slot.worker.process.kill('SIGKILL');
      }
    }, HEARTBEAT_INTERVAL_MS);
    this.#watchdog.unref();
  }

  /** Kills every worker at once (second signal). */
  kill(): void {
    this.#stopping = true;
    for (const slot of this.#slots) clearTimeout(slot.restartTimer);
    for (const worker of this.workers()) worker.process.kill('SIGKILL');
  }

  #fork(slot: Slot): void {
    slot.restartTimer = undefined;
    slot.listeningSince = undefined;
    slot.startSent = false;
    slot.lastHeardAt = undefined;
    slot.timedOut = false;
    slot.stoppedAccepting = false;
    slot.connectionsMayClose = false;
    const { logger, sink, config } = this.#options;
    const worker = cluster.fork();
    slot.worker = worker;
    const pid = worker.process.pid;
    logger.info({ slot: slot.index, worker: worker.id, workerPid: pid }, 'worker started');
    const { stdout, stderr } = worker.process;
    if (stdout) this.#workerOutput.read(stdout, { workerPid: pid, stream: 'stdout' });
    if (stderr) this.#workerOutput.read(stderr, { workerPid: pid, stream: 'stderr' });

    worker.on('message', (message: unknown) => {
      if (slot.worker === worker && slot.lastHeardAt !== undefined) slot.lastHeardAt = performance.now();
      if (!isMessage(message)) return;
      switch (message.type) {
        case 'heartbeat':
          return;
        case 'stopped-accepting':
          slot.stoppedAccepting = true;
          this.#releaseDrains();
          // One worker drained alone (SIGTERM to its pid): the others take the new connections.
          setTimeout(() => {
            if (slot.worker === worker && this.#slots.some((other) => this.#accepting(other))) {
              this.#allowClosing(slot);
            }
          }, LONE_DRAIN_WAIT_MS).unref();
          return;
        case 'log':
          if (typeof message.lines === 'string') sink.write(message.lines);
          return;
        case 'awaiting-start': {
          const othersStarted = this.#slots.some(
            (other) => other !== slot && other.worker !== undefined && other.startSent,
          );
          if (!othersStarted && this.#boundPort !== undefined) this.#listenPort = this.#boundPort;
          slot.startSent = true;
          const start: PrimaryMessage = {
            type: 'start',
            config,
            port: this.#listenPort,
            tls: this.#tls,
            alpnChallenges: [...this.#alpnChallenges.values()],
          };
          worker.send(start);
          return;
        }
        case 'start-failed':
          slot.lastFailure = String(message.reason);
          slot.failedForGood = message.permanent === true;
          return;
        case 'digestd:metrics:collected':
        case 'digestd:metrics:scrape':
          this.#options.metrics.receive(
            message as unknown as MetricsCollectedMessage | MetricsScrapeMessage,
            worker,
          );
          return;
      }
    });
    worker.on('listening', (address: Address) => this.#onListening(slot, worker, address));
    // Errors on the IPC channel (e.g. sending to a worker that just died) show up in 'exit'.
    worker.on('error', () => {});
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) =>
      this.#onExit(slot, worker, code, signal),
    );
  }

  /** Whether a slot's worker takes new connections from the shared listener. */
  #accepting(slot: Slot): boolean {
    return slot.worker !== undefined && slot.listeningSince !== undefined && !slot.stoppedAccepting;
  }

  /**
   * Once no worker accepts, node:cluster has closed the shared listener: the draining workers may
   * now tell their clients to close, who then find the port closed instead of a connection that
   * the kernel took and the listener's close resets.
   */
  #releaseDrains(): void {
    if (this.#slots.some((slot) => this.#accepting(slot))) return;
    for (const slot of this.#slots) if (slot.stoppedAccepting) this.#allowClosing(slot);
  }

  #allowClosing(slot: Slot): void {
    if (slot.connectionsMayClose || slot.worker === undefined) return;
    slot.connectionsMayClose = true;
    if (slot.worker.isConnected())
      slot.worker.send({ type: 'connections-may-close' } satisfies PrimaryMessage);
  }

  #onListening(slot: Slot, worker: Worker, address: Address): void {
    if (typeof address.port !== 'number') return;
    slot.listeningSince = Date.now();
    slot.lastHeardAt = performance.now();
    slot.startFailures = 0;
    slot.lastFailure = undefined;
    this.#boundPort = address.port;
    const host = address.addressType === 6 ? `[${address.address}]` : String(address.address);
    this.#address ??= `${this.#tls ? 'https' : 'http'}://${host}:${address.port}`;
    this.#options.logger.info(
      { slot: slot.index, worker: worker.id, workerPid: worker.process.pid, port: address.port },
      'worker listening',
    );
    if (!this.#started && this.#slots.every((each) => each.listeningSince !== undefined)) {
      this.#started = true;
      this.#startWaiter?.resolve(this.#address);
    }
  }

  #onExit(slot: Slot, worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const { logger } = this.#options;
    if (slot.worker === worker) slot.worker = undefined;
    this.#releaseDrains();
    const upForMs = slot.listeningSince === undefined ? undefined : Date.now() - slot.listeningSince;
    const fields = { slot: slot.index, worker: worker.id, workerPid: worker.process.pid, code, signal };
    if (this.#stopping) {
      logger.info(fields, 'worker exited');
      this.#checkAllExited();
      return;
    }
    logger.warn(
      { ...fields, upForMs },
      `worker exited ${signal ? `on ${signal}` : `with code ${code}`}${upForMs === undefined ? ' before listening' : ''}`,
    );
    if (upForMs === undefined) {
      slot.startFailures += 1;
      if (slot.failedForGood || slot.startFailures >= START_FAILURES_BEFORE_GIVING_UP) {
        this.#giveUp(slot, code, signal);
        return;
      }
    } else if (upForMs >= BACKOFF_RESET_AFTER_MS) {
      slot.backoffMs = BACKOFF_INITIAL_MS;
    }
    const delayMs = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, BACKOFF_MAX_MS);
    logger.info({ slot: slot.index, delayMs }, `restarting worker in ${delayMs} ms`);
    slot.restartTimer = setTimeout(() => {
      if (this.#stopping) return;
      supervisorMetrics.workerRestarts.inc();
      this.#fork(slot);
    }, delayMs);
  }

  #giveUp(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    const reason = slot.lastFailure ?? `worker exited ${signal ? `on ${signal}` : `with code ${code}`}`;
    const error = slot.failedForGood
      ? new Error(reason)
      : new Error(
          `workers keep failing at start-up (${slot.startFailures} times in a row), giving up: ${reason}`,
        );
    this.#stopping = true;
    for (const each of this.#slots) clearTimeout(each.restartTimer);
    if (!this.#started && this.#startWaiter) this.#startWaiter.reject(error);
    else this.#options.onCrashLoop(error);
  }

  #checkAllExited(): void {
    if (this.workers().length > 0) return;
    const waiters = this.#exitWaiters;
    this.#exitWaiters = [];
    for (const waiter of waiters) waiter();
  }
}
