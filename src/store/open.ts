import type { Cluster, Redis } from 'ioredis';
import type { CacheCounters } from './cache.js';
import type { MessageStore, StoreLogger } from './types.js';
import { parseStoreUrl } from './url.js';

/** Options of openStore: which store, and the limits every remote store shares. */
export interface StoreOptions {
  /** The store URL (see parseStoreUrl). */
  url: string;
  /** Time any store operation may take before it fails with StoreUnavailable, in ms. */
  timeoutMs: number;
  /** Bytes of the in-process LRU in front of remote stores; 0 turns it off. */
  cacheBytes: number;
  /** LMDB only: free space below which writes are refused before LMDB is asked; absent or 0: no check. */
  diskReserveBytes?: number | undefined;
  /** Replicas a Redis write waits for; when absent, 1 if the store has replicas, else 0. */
  redisWaitReplicas: number | undefined;
  /** Receives what a store reports outside any request (a Redis Cluster's topology changes). */
  logger?: StoreLogger | undefined;
  /** A store to read from: an LMDB path without a store is refused (StoreNotFound), not created. */
  mustExist?: boolean;
}

/**
 * Opens the store named by a store URL (see parseStoreUrl). Each backend's client library is
 * imported only when that backend is selected, so an LMDB-only deployment never loads a database
 * driver. Remote stores get the in-process message cache in front (counting into `counters`) unless
 * `cacheBytes` is 0.
 * Nothing waits for the backend here; call `ready()`.
 */
export async function openStore(options: StoreOptions, counters?: CacheCounters): Promise<MessageStore> {
  const location = parseStoreUrl(options.url);
  const { timeoutMs } = options;
  let store: MessageStore;
  switch (location.kind) {
    case 'lmdb': {
      const { createLmdbStore } = await import('./lmdb.js');
      return createLmdbStore({
        path: location.path,
        timeoutMs,
        mustExist: options.mustExist,
        diskReserveBytes: options.diskReserveBytes,
        logger: options.logger,
      });
    }
    case 'postgres': {
      const { createPostgresStore } = await import('./postgres.js');
      store = createPostgresStore({
        connectionString: location.connectionString,
        table: location.table,
        timeoutMs,
      });
      break;
    }
    case 'redis':
    case 'redis-cluster': {
      const { createRedisStore } = await import('./redis.js');
      store = createRedisStore({
        ...(location.kind === 'redis' ? { url: location.url } : { clusterNodes: location.nodes }),
        keyPrefix: location.keyPrefix,
        waitReplicas: options.redisWaitReplicas,
        timeoutMs,
        logger: options.logger,
      });
      break;
    }
  }
  if (options.cacheBytes === 0) return store;
  const { cachedStore } = await import('./cache.js');
  return cachedStore(store, { maxBytes: options.cacheBytes, counters });
}

/**
 * A Redis client for state that every node must share (the rate limiter's counters), connected to
 * the Redis or Redis Cluster that holds the messages. Undefined for stores that are not Redis.
 */
export async function openSharedRedis(
  options: Pick<StoreOptions, 'url' | 'timeoutMs'>,
): Promise<Redis | Cluster | undefined> {
  const location = parseStoreUrl(options.url);
  if (location.kind !== 'redis' && location.kind !== 'redis-cluster') return undefined;
  const ioredis = await import('ioredis');
  // Bounded like the store's own operations: a Redis that hangs must not hold requests.
  const redisOptions = {
    connectTimeout: options.timeoutMs,
    commandTimeout: options.timeoutMs,
    maxRetriesPerRequest: 1,
  };
  const client =
    location.kind === 'redis'
      ? new ioredis.Redis(location.url, redisOptions)
      : new ioredis.Cluster(location.nodes, { redisOptions });
  // Errors surface on each command (the limiter then lets requests through); the client reconnects.
  client.on('error', () => {});
  return client;
}
