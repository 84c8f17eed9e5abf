import type { Config } from '../config.js';
import { buildApp } from '../http/app.js';
import { connectionOptionsFrom } from '../http/connection.js';
import type { TlsMaterial } from '../http/tls.js';
import type { Logger } from '../log/logger.js';
import { openStore } from '../store/open.js';
import { onShutdownSignal } from './shutdown.js';

/** What a serving process needs besides its configuration. */
export interface WorkerOptions {
  config: Config;
  logger: Logger;
  tls: TlsMaterial | undefined;
}

/** Opens the store, listens, and serves until a shutdown signal. Resolves with the bound address. */
export async function runWorker({ config, logger, tls }: WorkerOptions): Promise<string> {
  const store = await openStore(`lmdb:${config.dataDir}`);
  await store.ready();
  const app = buildApp({
    store,
    logger,
    maxMessageBytes: config.maxMessageBytes,
    https: tls && { cert: tls.cert, key: tls.key },
    connection: connectionOptionsFrom(config),
  });
  app.addHook('onClose', async () => {
    await store.close();
  });
  await app.listen({
    port: config.port,
    host: config.host,
    // Fastify cannot tell that our server factory made an HTTPS server.
    listenTextResolver: (address) => `listening at ${tls ? address.replace(/^http:/, 'https:') : address}`,
  });
  const bound = app.server.address();
  if (bound === null || typeof bound === 'string') throw new Error('the server is not bound to a TCP port');
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  const address = `${tls ? 'https' : 'http'}://${host}:${bound.port}`;
  onShutdownSignal(logger, async () => {
    await app.close();
  });
  return address;
}
