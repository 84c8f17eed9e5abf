import type { Cluster, Redis } from 'ioredis';
import { InvalidConfig } from '../errors.js';
import { DEFAULT_STORE_TIMEOUT_MS } from './deadline.js';
import type { MessageStore, StoreLogger } from './types.js';

/** The settings every remote store shares (the matching fields of the configuration). */
export interface StoreSettings {
  /** Time any store operation may take before it fails with StoreUnavailable. @default 2000 */
  storeTimeout?: number;
  /** Bytes of the in-process LRU in front of remote stores; 0 turns it off. @default 64 MiB */
  cacheBytes?: number;
  /** Replicas a Redis write waits for. @default 1 when replicas exist, else 0 */
  redisWaitReplicas?: number | undefined;
  /** Receives what a store reports outside any request (a Redis Cluster's topology changes). */
  logger?: StoreLogger | undefined;
}

/** A store URL taken apart. */
export type StoreLocation =
  | { kind: 'lmdb'; path: string }
  | { kind: 'postgres'; connectionString: string; table: string | undefined }
  | { kind: 'redis'; url: string; keyPrefix: string | undefined }
  | { kind: 'redis-cluster'; nodes: { host: string; port: number }[]; keyPrefix: string | undefined };

export const STORE_URL_FORMS =
  'lmdb:<dir>, postgres://user@host:port/db[?table=name], redis://host:port[/db][?prefix=p], ' +
  'redis-cluster://host:port,host:port,...[?prefix=p]';

/**
 * Parses a store URL:
 * - `lmdb:<dir>`: the embedded store in <dir>
 * - `postgres://user@host:port/db` (or `postgresql://`), optional `?table=<name>`
 * - `redis://host:port[/db]` (or `rediss://` for TLS), optional `?prefix=<key prefix>`
 * - `redis-cluster://host:port,host:port,...` (seed nodes), optional `?prefix=<key prefix>`
 * Throws InvalidConfig naming the problem.
 */
export function parseStoreUrl(url: string, flag = '--store'): StoreLocation {
  const bad = (why: string) => new InvalidConfig([`${flag}: ${why} (expected ${STORE_URL_FORMS})`]);
  const scheme = url.slice(0, Math.max(0, url.indexOf(':'))).toLowerCase();
  switch (scheme) {
    case 'lmdb': {
      const path = url.slice('lmdb:'.length);
      if (path === '') throw bad('lmdb: needs a directory');
      return { kind: 'lmdb', path };
    }
    case 'postgres':
    case 'postgresql':
    case 'redis':
    case 'rediss': {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw bad(`"${url}" is not a valid URL`);
      }
      if (parsed.hostname === '') throw bad(`"${url}" names no host`);
      const option = scheme.startsWith('postgres') ? 'table' : 'prefix';
      const value = parsed.searchParams.get(option) ?? undefined;
      parsed.searchParams.delete(option);
      const rest = parsed.toString();
      return scheme.startsWith('postgres')
        ? { kind: 'postgres', connectionString: rest, table: value }
        : { kind: 'redis', url: rest, keyPrefix: value };
    }
    case 'redis-cluster': {
      const [hostList = '', query = ''] = url.slice('redis-cluster://'.length).split('?', 2);
      const nodes = hostList
        .replace(/\/$/, '')
        .split(',')
        .filter((seed) => seed !== '')
        .map((seed) => {
          const match = /^([^:/]+|\[[^\]]+\]):(\d{1,5})$/.exec(seed);
          if (!match) throw bad(`"${seed}" is not host:port`);
          return { host: match[1]!.replace(/^\[|\]$/g, ''), port: Number(match[2]) };
        });
      if (nodes.length === 0) throw bad('redis-cluster:// needs at least one host:port');
      return {
        kind: 'redis-cluster',
        nodes,
        keyPrefix: new URLSearchParams(query).get('prefix') ?? undefined,
      };
    }
    default:
      throw bad(`unknown store "${url}"`);
  }
}

/**
 * Opens the store named by a store URL (see parseStoreUrl). Each backend's client library is
 * imported only when that backend is selected, so an LMDB-only deployment never loads a database
 * driver. Remote stores get the in-process message cache in front unless `cacheBytes` is 0.
 * Nothing waits for the backend here; call `ready()`.
 */
export async function openStore(url: string, settings: StoreSettings = {}): Promise<MessageStore> {
  const location = parseStoreUrl(url);
  const timeoutMs = settings.storeTimeout ?? DEFAULT_STORE_TIMEOUT_MS;
  let store: MessageStore;
  switch (location.kind) {
    case 'lmdb': {
      const { LmdbStore } = await import('./lmdb.js');
      return LmdbStore.open({ path: location.path, timeoutMs });
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
        waitReplicas: settings.redisWaitReplicas,
        timeoutMs,
        logger: settings.logger,
      });
      break;
    }
  }
  const cacheBytes = settings.cacheBytes ?? 64 * 1024 * 1024;
  if (cacheBytes === 0) return store;
  const { CachedStore } = await import('./cache.js');
  return new CachedStore(store, { maxBytes: cacheBytes });
}

/**
 * A Redis client for state that every node must share (the rate limiter's counters), connected to
 * the Redis or Redis Cluster that holds the messages. Undefined for stores that are not Redis.
 */
export async function openSharedRedis(
  url: string,
  timeoutMs = DEFAULT_STORE_TIMEOUT_MS,
): Promise<Redis | Cluster | undefined> {
  const location = parseStoreUrl(url);
  if (location.kind !== 'redis' && location.kind !== 'redis-cluster') return undefined;
  const ioredis = await import('ioredis');
  // Bounded like the store's own operations: a Redis that hangs must not hold requests.
  const options = {
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
  };
  const client =
    location.kind === 'redis'
      ? new ioredis.Redis(location.url, options)
      : new ioredis.Cluster(location.nodes, { redisOptions: options });
  // Errors surface on each command (the limiter then lets requests through); the client reconnects.
  client.on('error', () => {});
  return client;
}
