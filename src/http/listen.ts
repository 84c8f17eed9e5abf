import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer, type AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Duplex } from 'node:stream';
import { ListenFailed } from '../errors.js';
import { connectionEventOf } from './connection.js';

/** Where to listen. */
export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Binds the app's server to host:port once its plugins are ready, and resolves with the bound
 * address. It does not go through Fastify's listen(): that one logs every address the server
 * answers on, and for the IPv4 wildcard it lists the machine's interfaces with
 * os.networkInterfaces(), which opens a netlink socket. Under the systemd unit's
 * RestrictAddressFamilies (no AF_NETLINK) that socket(2) fails with EAFNOSUPPORT and listen()
 * rejects although the port is bound, and no worker could start. The caller logs the address.
 * Since Fastify did not listen, its close() leaves the server open: stop the app with drain().
 */
export async function listen(app: FastifyInstance, where: ListenAddress): Promise<AddressInfo> {
  await app.ready();
  trackConnections(app.server);
  try {
    return await bind(app, where);
  } catch (error) {
    // `::` is dual-stack (IPv6 and IPv4) wherever IPv6 exists; a machine or container without
    // IPv6 refuses the address family, and all IPv4 addresses are then the nearest meaning.
    const code = (error as NodeJS.ErrnoException).code;
    if (where.host !== '::' || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) {
      throw listenError(where, error);
    }
    return bind(app, { host: '0.0.0.0', port: where.port }).catch((fallback: unknown) => {
      throw listenError({ host: '0.0.0.0', port: where.port }, fallback);
    });
  }
}

/** Why binding failed, for an operator: these fail the same way in every worker and on every retry. */
const BIND_FAILURES: Record<string, string> = {
  EADDRINUSE: 'the address is already in use by another program',
  EACCES: 'permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'no network interface of this machine has that address',
  EAFNOSUPPORT: 'this machine does not support that address family',
};

function listenError(where: ListenAddress, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const meaning = BIND_FAILURES[code];
  if (meaning === undefined) return error;
  const host = where.host.includes(':') ? `[${where.host}]` : where.host;
  return new ListenFailed(`Cannot listen on ${host}:${where.port}: ${meaning} (${code}).`, { cause: error });
}

async function bind(app: FastifyInstance, where: ListenAddress): Promise<AddressInfo> {
  const server = app.server;
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => {
      server.off('listening', onListening);
      reject(error);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host: where.host, port: where.port });
  });
  const bound = server.address();
  if (bound === null || typeof bound === 'string') throw new Error('the server is not bound to a TCP port');
  return bound;
}

/** `http://127.0.0.1:8080`, `https://[::]:8443`: the base URL of a bound address. */
export function addressUrl(address: AddressInfo, tls: boolean): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${tls ? 'https' : 'http'}://${host}:${address.port}`;
}

/**
 * How long a drain leaves an idle keep-alive connection open, in ms. A client that has just had
 * an answer may be sending its next request on the connection already (a busy client takes a
 * while); closed under it, that request is reset, and a POST is not retried. Within the grace it
 * is answered, with `Connection: close`.
 */
export const DRAIN_IDLE_GRACE_MS = 1000;

/** The connections of a listening server, and whether it is draining. */
interface Drainable {
  sockets: Set<Duplex>;
  draining: boolean;
  /** Closes the connections idle by then, DRAIN_IDLE_GRACE_MS from now. */
  closeIdleLater: () => void;
}

const drainables = new WeakMap<Server, Drainable>();

/** The answer a connection is on or was last on, kept on its socket (a property write per request). */
const UNDER_WAY = Symbol('digestd.answerUnderWay');
type TrackedSocket = Duplex & { [UNDER_WAY]?: ServerResponse };

/**
 * Keeps the open connections, and on each socket the answer it is on, so that a drain can make
 * that answer the last of its connection. Connections, not answers: a set of answers that every
 * request entered and left made each GET markedly slower (see docs/benchmarks.md). The request
 * listener runs before Fastify's handler, so an answer begun while draining is already marked.
 */
function trackConnections(server: Server): void {
  if (drainables.has(server)) return;
  const state: Drainable = {
    sockets: new Set(),
    draining: false,
    closeIdleLater: () => setTimeout(() => server.closeIdleConnections(), DRAIN_IDLE_GRACE_MS).unref(),
  };
  drainables.set(server, state);
  server.on(connectionEventOf(server), (socket: Duplex) => {
    state.sockets.add(socket);
    socket.once('close', () => state.sockets.delete(socket));
  });
  server.prependListener('request', (request: IncomingMessage, response: ServerResponse) => {
    if (state.draining) response.shouldKeepAlive = false;
    (request.socket as TrackedSocket)[UNDER_WAY] = response;
  });
}

/** The answer a connection is on, or undefined when it is idle. */
function underWay(socket: TrackedSocket): ServerResponse | undefined {
  const response = socket[UNDER_WAY];
  return response === undefined || response.writableFinished ? undefined : response;
}

/** Options of drain. */
export interface DrainOptions {
  /** How long in-flight requests may take, in ms; then the connections still open are closed. */
  timeoutMs: number;
  /** Called when the timeout closes connections, with how many were still on an unsent answer. */
  onTimeout?: (unanswered: number) => void;
  /**
   * Resolves once no new connection can reach this server any more. Until then its answers keep
   * their connections open: a client told `Connection: close` connects again at once, and a
   * connection the kernel took for a listener shared with other processes (node:cluster), after
   * this one stopped accepting and before the last one did, is reset when the listener closes.
   */
  listenerClosed?: () => Promise<void>;
}

/**
 * Stops an app that listen() bound without cutting off a request. It stops accepting; once no
 * new connection can come (`listenerClosed`), on each open connection the last request received,
 * and any arriving meanwhile, is answered with
 * `Connection: close`, so that its connection ends after it; idle keep-alive connections are
 * closed after DRAIN_IDLE_GRACE_MS. Once no connection is left, or at the timeout, it closes the
 * app, whose onClose hooks close the store after the last answer. Fastify's own close does not
 * fit: it closes the store while requests still run, and never closes a server it did not bind.
 */
export async function drain(app: FastifyInstance, options: DrainOptions): Promise<void> {
  const server = app.server;
  const state = drainables.get(server);
  if (state !== undefined && server.listening) {
    const timer = setTimeout(() => {
      options.onTimeout?.(unanswered(state.sockets));
      server.closeAllConnections();
    }, options.timeoutMs);
    // net.Server's close() stops accepting and resolves once the last connection has closed.
    // node:http's own close() would also close the idle connections at once, with no grace,
    // and stop checking the header and request timeouts, which still apply while draining.
    const closed = new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()));
    await options.listenerClosed?.();
    state.draining = true;
    for (const socket of state.sockets) {
      const response = underWay(socket);
      if (response === undefined) continue;
      if (!response.headersSent) response.shouldKeepAlive = false;
      // Its headers went out promising keep-alive: once it is sent its connection is idle, and
      // gets the same grace as those idle now.
      else if (response.shouldKeepAlive) response.once('finish', state.closeIdleLater);
    }
    state.closeIdleLater();
    try {
      await closed;
    } finally {
      clearTimeout(timer);
    }
  }
  await app.close();
}

/** How many connections are on an answer not yet sent. */
function unanswered(sockets: Iterable<Duplex>): number {
  let count = 0;
  for (const socket of sockets) if (underWay(socket) !== undefined) count += 1;
  return count;
}
