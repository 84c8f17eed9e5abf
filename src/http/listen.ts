import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';

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
    if (where.host !== '::' || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw error;
    return bind(app, { host: '0.0.0.0', port: where.port });
  }
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
