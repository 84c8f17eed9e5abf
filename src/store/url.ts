import { InvalidConfig } from '../errors.js';

/** A store URL taken apart. */
export type StoreLocation =
  | { kind: 'lmdb'; path: string }
  | { kind: 'postgres'; connectionString: string; table: string | undefined }
  | { kind: 'redis'; url: string; keyPrefix: string | undefined }
  | { kind: 'redis-cluster'; nodes: { host: string; port: number }[]; keyPrefix: string | undefined };

/** A table name, optionally schema-qualified (`schema.table`): PostgreSQL identifiers of letters, digits, _. */
export function isTableName(table: string): boolean {
  const parts = table.split('.');
  return parts.length <= 2 && parts.every((part) => /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(part));
}

/** A Redis key prefix: up to 32 letters, digits, `:`, `_`, `-`. */
export function isKeyPrefix(prefix: string): boolean {
  return /^[A-Za-z0-9:_-]{0,32}$/.test(prefix);
}

export const STORE_URL_FORMS =
  'lmdb:<dir>, postgres://user@host:port/db[?table=name], redis://host:port[/db][?prefix=p], ' +
  'redis-cluster://host:port,host:port,...[?prefix=p]';

/**
 * Parses a store URL:
 * - `lmdb:<dir>`: the embedded store in <dir>
 * - `postgres://user@host:port/db` (or `postgresql://`), optional `?table=<name>`
 * - `redis://host:port[/db]` (or `rediss://` for TLS), optional `?prefix=<key prefix>`
 * - `redis-cluster://host:port,host:port,...` (seed nodes), optional `?prefix=<key prefix>`
 * Throws InvalidConfig naming the problem; the caller names the setting that held the URL.
 */
export function parseStoreUrl(url: string): StoreLocation {
  const bad = (why: string) => new InvalidConfig([`${why} (expected ${STORE_URL_FORMS})`]);
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
      if (value !== undefined) checkOption(option, value, bad);
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
      const keyPrefix = new URLSearchParams(query).get('prefix') ?? undefined;
      if (keyPrefix !== undefined) checkOption('prefix', keyPrefix, bad);
      return { kind: 'redis-cluster', nodes, keyPrefix };
    }
    default:
      throw bad(`unknown store "${url}"`);
  }
}

/** Refuses a table or key prefix the store would refuse, so that a setting's mistake shows when it is read. */
function checkOption(option: 'table' | 'prefix', value: string, bad: (why: string) => InvalidConfig): void {
  if (option === 'table' && !isTableName(value)) {
    throw bad(`"${value}" is not a valid table name (letters, digits, _)`);
  }
  if (option === 'prefix' && !isKeyPrefix(value)) {
    throw bad(`key prefix "${value}" may hold only letters, digits, ":", "_", "-"`);
  }
}
