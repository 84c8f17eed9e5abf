import type { Config } from '../config.js';
import cluster from 'node:cluster';
import { buildApp } from '../http/app.js';
import { httpSettingsFromConfig } from '../http/options.js';
import type { TlsMaterial } from '../http/tls.js';
import type { Logger } from '../log/logger.js';
import { openStore } from '../store/open.js';
import { answerMetricsCollection, metricsText, startMetricsListener } from './metrics.js';
import { onShutdownSignal } from './shutdown.js';

/** What a serving process needs besides its configuration. */
export interface WorkerOptions {
  config: Config;
  logger: Logger;
  tls: TlsMaterial | undefined;
}

/** Opens the store, listens, and serves until a shutdown signal. Resolves with the bound address. */
export async function runWorker({ config, logger, tls }: WorkerOptions): Promise<string> {
  const store = await openStore(config.store, config);
  await store.ready();
  answerMetricsCollection();
  const app = buildApp({
    store,
    logger,
    ...(await httpSettingsFromConfig(config)),
    https: tls && { cert: tls.cert, key: tls.key },
    // With --metrics-port, /metrics lives on its own listener (the primary's, in a cluster).
    metrics: config.metricsPort === undefined ? { collect: () => metricsText() } : false,
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
  const metricsListener =
    config.metricsPort !== undefined && !cluster.isWorker
      ? await startMetricsListener({ host: config.metricsHost, port: config.metricsPort, logger })
      : undefined;
  if (metricsListener) {
    logger.info({ metricsAddress: metricsListener.address }, `metrics on ${metricsListener.address}/metrics`);
  }
  onShutdownSignal(logger, async () => {
    await Promise.all([app.close(), metricsListener?.close()]);
  });
  return address;
}
