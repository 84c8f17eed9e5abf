import { redactStoreUrl } from '../config/redact.js';
import { InvalidConfig, StoreNotFound } from '../errors.js';
import { openStore, type StoreOptions } from '../store/open.js';
import type { MessageStore } from '../store/types.js';

/**
 * Opens and connects the store a command works on, naming the flag that chose it in any failure.
 * A store read from (`mustExist`) must already be there: a mistyped LMDB path would otherwise be a
 * new, empty store that verifies clean or migrates nothing (exit 2, like any setting's mistake).
 */
export async function openCommandStore(
  flag: string,
  options: StoreOptions & { mustExist: boolean },
): Promise<MessageStore> {
  let store: MessageStore;
  try {
    store = await openStore(options);
  } catch (error) {
    if (error instanceof StoreNotFound) throw new InvalidConfig([`${flag}: ${error.message}`]);
    throw error;
  }
  try {
    await store.ready();
    return store;
  } catch (error) {
    await store.close().catch(() => {});
    // The store's own message speaks to an HTTP client ("try again shortly"); its cause says why.
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
    const why = cause instanceof Error ? cause.message : String(cause);
    throw new Error(
      `Cannot reach the store ${redactStoreUrl(options.url)} (${flag}): ${why.replace(/\.$/, '')}.`,
      {
        cause: error,
      },
    );
  }
}
