import type { Config } from '../config.js';
import type { AppOptions } from './app.js';
import { readWriteTokenFile } from './plugins/write-tokens.js';

/** The HTTP settings of AppOptions that come straight from the configuration. */
export type HttpSettings = Pick<
  AppOptions,
  'maxMessageBytes' | 'batchMax' | 'writeTokens' | 'rateLimit' | 'pressure' | 'trustProxy'
>;

/**
 * Maps the configuration to app options, reading --write-token-file.
 * Throws InvalidConfig when that file cannot be read or holds no token.
 */
export async function httpSettingsFromConfig(config: Config): Promise<HttpSettings> {
  const fileTokens =
    config.writeTokenFile === undefined ? [] : await readWriteTokenFile(config.writeTokenFile);
  return {
    maxMessageBytes: config.maxMessageBytes,
    batchMax: config.batchMax,
    trustProxy: config.trustProxy,
    writeTokens: [...(config.writeToken ?? []), ...fileTokens],
    rateLimit: config.rateLimit && { max: config.rateLimit.max, windowMs: config.rateLimit.windowMs },
    pressure: {
      maxEventLoopDelayMs: config.maxEventLoopDelayMs,
      maxHeapUsedBytes: config.maxHeapUsedBytes,
      maxRssBytes: config.maxRssBytes,
    },
  };
}
