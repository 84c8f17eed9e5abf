import { createServer } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. For processes whose port must be known
 * before they start (Redis Cluster's bus ports, servers that do not report their address); the
 * race with other processes is small.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}
