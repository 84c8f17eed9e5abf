import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ListenFailed } from '../errors.js';

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
 * rejects although the port is bound, so every worker died at start. The caller logs the address.
 */
export async function listen(app: FastifyInstance, where: ListenAddress): Promise<AddressInfo> {
  await app.ready();
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
