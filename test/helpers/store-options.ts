import { loadConfig } from '../../src/config/load.js';

/**
 * The deadline of every store operation as `digestd serve` sets it by default (--store-timeout),
 * for the stores a test opens itself: stores take it from the settings and have none of their own.
 */
export const STORE_TIMEOUT_MS = loadConfig([], {}).store.timeoutMs;
