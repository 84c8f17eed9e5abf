// lmdb, except that the environment never fsyncs (noSync): a write's `flushed` promise is then its
// commit, so whoever awaits it acknowledges a write that is only in the page cache.
import * as lmdb from 'lmdb';

export * from 'lmdb';

export function open(pathOrOptions, options) {
  const merged = typeof pathOrOptions === 'string' ? { ...options, path: pathOrOptions } : pathOrOptions;
  return lmdb.open({ ...merged, noSync: true, overlappingSync: false });
}
