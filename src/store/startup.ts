import { setTimeout as sleep } from 'node:timers/promises';
import { StoreRefused } from '../errors.js';
import { openStore, type StoreOptions } from './open.js';

/** Options of waitForStore. */
export interface StoreWaitOptions {
  /** How long a store that cannot be reached yet is tried again before giving up, in ms. */
  waitMs: number;
  /** Told of each failed attempt that will be tried again, and when. */
  onRetry: (reason: string, retryInMs: number) => void;
}

/** First pause between attempts; it doubles up to RETRY_MAX_MS. */
const RETRY_INITIAL_MS = 500;
const RETRY_MAX_MS = 5000;

/** Error codes (Node's names, lmdb-js's errno numbers) of a file system that refuses us for good. */
const PERMANENT_FILE_ERRORS = new Set<string | number>([
  'EACCES',
  'EPERM',
  'EROFS',
  'ENOTDIR',
  'EISDIR',
  13, // EACCES
  1, // EPERM
  30, // EROFS
  20, // ENOTDIR
]);

/**
 * Whether a failure to open a store will not fix itself: permission denied on its directory,
 * PostgreSQL's authentication (class 28), unknown database (3D000) or privilege errors (42501),
 * Redis's NOAUTH and WRONGPASS. Anything else (connection refused, a timeout, a database starting
 * up) may pass.
 */
export function isPermanentStoreError(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 6; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if ((typeof code === 'string' || typeof code === 'number') && PERMANENT_FILE_ERRORS.has(code)) {
      return true;
    }
    if (typeof code === 'string' && /^(28...|3D000|42501)$/.test(code)) return true;
    if (/^(NOAUTH|WRONGPASS)\b|permission denied|is not a directory/i.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}

/** The innermost message of an error and its causes: what the backend itself said. */
export function rootMessage(error: unknown): string {
  let current = error;
  for (let depth = 0; current instanceof Error && current.cause instanceof Error && depth < 6; depth += 1) {
    current = current.cause;
  }
  return current instanceof Error ? current.message : String(current);
}

/**
 * Opens the store once, waits until it is ready and closes it again: the primary does this before
 * it makes a certificate or starts a worker, so that a store that refuses us fails the start once
 * (StoreRefused), and one that is still starting is waited for, within `waitMs`, instead of
 * workers crashing in a loop. Rejects with the last failure once `waitMs` has passed.
 */
export async function waitForStore(store: StoreOptions, options: StoreWaitOptions): Promise<void> {
  const deadline = Date.now() + options.waitMs;
  let pauseMs = RETRY_INITIAL_MS;
  for (;;) {
    try {
      const opened = await openStore({ ...store, cacheBytes: 0 });
      try {
        await opened.ready();
      } finally {
        await opened.close();
      }
      return;
    } catch (error) {
      if (isPermanentStoreError(error)) throw new StoreRefused(rootMessage(error), { cause: error });
      const left = deadline - Date.now();
      if (left <= 0) throw error;
      const retryInMs = Math.min(pauseMs, left);
      options.onRetry(rootMessage(error), retryInMs);
      await sleep(retryInMs);
      pauseMs = Math.min(pauseMs * 2, RETRY_MAX_MS);
    }
  }
}
