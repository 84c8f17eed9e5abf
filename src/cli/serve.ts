import { loadConfig, redactConfig } from '../config.js';
import { loadTlsMaterial } from '../http/tls.js';
import { createLogger } from '../log/logger.js';
import { runWorker } from '../process/worker.js';

/** `digestd serve [options]`: serves the API until SIGTERM or SIGINT. */
export async function serve(argv: readonly string[]): Promise<void> {
  const config = loadConfig(argv);
  const logger = createLogger({ level: config.logLevel });
  const tls = config.tls
    ? await loadTlsMaterial({ certPath: config.tlsCert, keyPath: config.tlsKey, dataDir: config.dataDir })
    : undefined;
  if (tls) {
    logger.info(
      { cert: tls.certPath, key: tls.keyPath, generated: tls.generated },
      tls.generated
        ? `generated a self-signed TLS certificate at ${tls.certPath}`
        : `TLS certificate ${tls.certPath}`,
    );
  }
  const address = await runWorker({ config, logger, tls });
  logger.info({ address, config: redactConfig(config) }, `digestd listening on ${address}`);
}
