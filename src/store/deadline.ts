import { DigestdError, StoreUnavailable } from '../errors.js';

/**
 * Settles like `operation`, but rejects with StoreUnavailable after `timeoutMs` and wraps any other
 * failure in StoreUnavailable (with the backend error as `cause`, for the log), so a slow or broken
 * store gives a 503 instead of a hang or a 500. The operation itself is not cancelled; each backend
 * also sets its client's own timeouts so abandoned work ends too. `kind` names the store.
 */
export function withDeadline<T>(operation: Promise<T>, timeoutMs: number, kind: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new StoreUnavailable(
            `The ${kind} store did not answer within ${timeoutMs} ms; try again shortly.`,
            {
              reason: 'timeout',
            },
          ),
        ),
      timeoutMs,
    );
    operation.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(asStoreUnavailable(error, kind));
      },
    );
  });
}

/** Our own errors pass through; anything else becomes StoreUnavailable with it as the cause. */
export function asStoreUnavailable(error: unknown, kind: string): DigestdError {
  if (error instanceof DigestdError) return error;
  return new StoreUnavailable(`The ${kind} store is unavailable; try again shortly.`, { cause: error });
}
