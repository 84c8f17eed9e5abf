import { InvalidConfig } from '../errors.js';
import type { MessageStore } from './types.js';

/**
 * Opens the store named by a store URL. Each backend's client library is imported only when
 * that backend is selected, so an LMDB-only deployment never loads a database driver.
 *
 * - `lmdb:<dir>`: the embedded store in <dir>
 */
export async function openStore(url: string): Promise<MessageStore> {
  const scheme = url.slice(0, url.indexOf(':'));
  switch (scheme) {
    case 'lmdb': {
      const { LmdbStore } = await import('./lmdb.js');
      return LmdbStore.open({ path: url.slice('lmdb:'.length) });
    }
    default:
      throw new InvalidConfig([`--store: unknown store "${url}"; expected lmdb:<dir>`]);
  }
}
