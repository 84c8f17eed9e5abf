/** The headers of an error that needs none. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** Retry-After of a service that expects to answer again shortly (a store or the other workers). */
const RETRY_SHORTLY = Object.freeze({ 'retry-after': '1' });

/** Retry-After of a node waiting for something slower than a store (a certificate). */
const RETRY_LATER = Object.freeze({ 'retry-after': '5' });

/**
 * Every error digestd raises on purpose, with its machine code, HTTP status and the headers its
 * answer needs. The HTTP layer turns these into `{"err_msg", "code"}` answers in one place
 * (src/http/answer.ts).
 */
export class DigestdError extends Error {
  /** Stable, machine-readable code, e.g. `MESSAGE_NOT_FOUND`. */
  readonly code: string;
  /** HTTP status this error maps to. */
  readonly statusCode: number;
  /** Headers the answer carries (lowercase names), e.g. `allow` on a 405. */
  readonly headers: Readonly<Record<string, string>> = NO_HEADERS;

  constructor(message: string, code: string, statusCode: number, options?: { cause?: unknown }) {
    // A client error (4xx) is an answer, not a fault: it is never logged with a stack, and capturing
    // one costs more than the rest of a 404. Server errors (5xx) keep theirs for the log.
    const stackTraceLimit = Error.stackTraceLimit;
    if (statusCode < 500) Error.stackTraceLimit = 0;
    try {
      super(message, options);
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    this.name = new.target.name;
    this.code = code;
    this.statusCode = statusCode;
  }
}

export class InvalidMessage extends DigestdError {
  constructor(message: string) {
    super(message, 'INVALID_MESSAGE', 400);
  }
}

export class InvalidJson extends DigestdError {
  constructor(message = 'The request body is not valid JSON.') {
    super(message, 'INVALID_JSON', 400);
  }
}

export class InvalidUtf8 extends DigestdError {
  constructor(message = 'The request body is not valid UTF-8.') {
    super(message, 'INVALID_UTF8', 400);
  }
}

export class BadRequest extends DigestdError {
  constructor(message: string) {
    super(message, 'BAD_REQUEST', 400);
  }
}

export class MessageNotFound extends DigestdError {
  constructor() {
    super('Message not found', 'MESSAGE_NOT_FOUND', 404);
  }
}

/**
 * The message was taken down (a removal by an administrator): its digest is on the store's
 * denylist, so it is neither served nor stored again.
 */
export class MessageRemoved extends DigestdError {
  constructor(message = 'The message was removed; it is not served and cannot be stored again.') {
    super(message, 'MESSAGE_REMOVED', 410);
  }
}

export class RouteNotFound extends DigestdError {
  constructor(method: string, url: string) {
    super(`No route for ${method} ${url}.`, 'ROUTE_NOT_FOUND', 404);
  }
}

export class MethodNotAllowed extends DigestdError {
  override readonly headers: Readonly<Record<string, string>>;
  constructor(method: string, allow: readonly string[]) {
    super(`Method ${method} is not allowed here; use ${allow.join(' or ')}.`, 'METHOD_NOT_ALLOWED', 405);
    // RFC 9110 15.5.6: a 405 names the methods the resource does support.
    this.headers = { allow: allow.join(', ') };
  }
}

export class PayloadTooLarge extends DigestdError {
  /** `subject` names what is too large, e.g. `messages[3]`; the message by default. */
  constructor(limitBytes: number, subject = 'The message') {
    super(`${subject} is larger than the limit of ${limitBytes} bytes.`, 'PAYLOAD_TOO_LARGE', 413);
  }
}

export class UnsupportedMediaType extends DigestdError {
  constructor(accepted: readonly string[], detail = 'Unsupported Content-Type', advice = 'send the body as') {
    super(`${detail}; ${advice} ${accepted.join(' or ')}.`, 'UNSUPPORTED_MEDIA_TYPE', 415);
  }
}

export class InvalidDigest extends DigestdError {
  constructor(message: string) {
    super(message, 'INVALID_DIGEST', 400);
  }
}

export class BatchTooLarge extends DigestdError {
  constructor(count: number, limit: number) {
    super(
      `The batch holds ${count} items; at most ${limit} are accepted per request (--batch-max).`,
      'BATCH_TOO_LARGE',
      413,
    );
  }
}

/** A lookup whose answer would hold more than --max-answer-size of messages. */
export class AnswerTooLarge extends DigestdError {
  constructor(limitBytes: number) {
    super(
      `The answer would hold more than ${limitBytes} bytes of messages (--max-answer-size); ask for fewer digests per request.`,
      'ANSWER_TOO_LARGE',
      413,
    );
  }
}

const TOKEN_CHALLENGE = Object.freeze({ 'www-authenticate': 'Bearer realm="digestd"' });
const INVALID_TOKEN_CHALLENGE = Object.freeze({
  'www-authenticate': 'Bearer realm="digestd", error="invalid_token"',
});

const INSUFFICIENT_SCOPE_CHALLENGE = Object.freeze({
  'www-authenticate': 'Bearer realm="digestd", error="insufficient_scope"',
});

/** What a bearer token is asked for: writing (write tokens) or removing (admin tokens). */
export type TokenScope = 'write' | 'admin';

const SCOPE_WORDS: Record<TokenScope, { gerund: string; token: string }> = {
  write: { gerund: 'Writing', token: 'a write token' },
  admin: { gerund: 'Removing a message', token: 'an admin token (--admin-token)' },
};

/**
 * A write without a valid `Authorization: Bearer <token>` while write tokens are configured, or a
 * removal without a valid admin token.
 */
export class Unauthorized extends DigestdError {
  /** The `WWW-Authenticate` challenge of RFC 6750, naming the error when a token was given. */
  override readonly headers: Readonly<Record<string, string>>;
  constructor(tokenGiven: boolean, scope: TokenScope = 'write') {
    const { gerund, token } = SCOPE_WORDS[scope];
    super(
      tokenGiven
        ? `The bearer token is not valid for ${gerund.toLowerCase()}.`
        : `${gerund} requires an "Authorization: Bearer <token>" header with ${token}.`,
      'UNAUTHORIZED',
      401,
    );
    this.headers = tokenGiven ? INVALID_TOKEN_CHALLENGE : TOKEN_CHALLENGE;
  }
}

/** A valid token of another scope: a write token presented for a removal (RFC 6750 insufficient_scope). */
export class Forbidden extends DigestdError {
  override readonly headers = INSUFFICIENT_SCOPE_CHALLENGE;
  constructor(scope: TokenScope) {
    super(
      `This token may not be used for ${SCOPE_WORDS[scope].gerund.toLowerCase()}; it needs ${SCOPE_WORDS[scope].token}.`,
      'FORBIDDEN',
      403,
    );
  }
}

/** DELETE /messages/<digest> on a server started without any admin token. */
export class RemovalDisabled extends DigestdError {
  constructor() {
    super(
      'Removal over HTTP is off on this server: start it with --admin-token or --admin-token-file, or use "digestd remove".',
      'REMOVAL_DISABLED',
      403,
    );
  }
}

export class TooManyRequests extends DigestdError {
  override readonly headers: Readonly<Record<string, string>>;
  constructor(retryAfterSeconds: number) {
    super(
      `Too many requests from this client; try again in ${retryAfterSeconds} s.`,
      'TOO_MANY_REQUESTS',
      429,
    );
    this.headers = { 'retry-after': String(retryAfterSeconds) };
  }
}

/** The process is past its event-loop delay or memory limits; the client should retry later. */
export class Overloaded extends DigestdError {
  override readonly headers: Readonly<Record<string, string>>;
  constructor(retryAfterSeconds: number) {
    super('The server is overloaded; try again shortly.', 'OVERLOADED', 503);
    this.headers = { 'retry-after': String(retryAfterSeconds) };
  }
}

/** The metrics of the other workers could not be gathered in time. */
export class MetricsUnavailable extends DigestdError {
  override readonly headers = RETRY_SHORTLY;
  constructor(options?: { cause?: unknown }) {
    super('The metrics could not be collected; try again shortly.', 'METRICS_UNAVAILABLE', 503, options);
  }
}

export class StoreUnavailable extends DigestdError {
  override readonly headers = RETRY_SHORTLY;
  /** Why, in one word for metrics labels: `unavailable`, `timeout`, `too_few_replicas`. */
  readonly reason: string;
  constructor(
    message = 'The message store is unavailable; try again shortly.',
    options?: { cause?: unknown; reason?: string },
  ) {
    super(message, 'STORE_UNAVAILABLE', 503, options);
    this.reason = options?.reason ?? 'unavailable';
  }
}

/**
 * This node is not ready for public traffic for a reason other than its store (no ACME
 * certificate yet): /readyz says so until it is.
 */
export class NotReady extends DigestdError {
  override readonly headers = RETRY_LATER;
  constructor(reason: string) {
    super(reason, 'NOT_READY', 503);
  }
}

/** The operator's TLS certificate or key cannot be read, parsed, or paired. */
export class InvalidTlsFiles extends DigestdError {
  constructor(message: string) {
    super(message, 'INVALID_TLS_FILES', 500);
  }
}

/** A store that must already exist (the source of verify or migrate) is not there. */
export class StoreNotFound extends DigestdError {
  constructor(message: string) {
    super(message, 'STORE_NOT_FOUND', 500);
  }
}

/**
 * A write that could not be stored because the disk (or the quota, or LMDB's map) is full. Reads
 * still work; writes resume by themselves once space is freed.
 */
export class InsufficientStorage extends DigestdError {
  constructor(
    message = 'The message store is out of space; try again once space is freed.',
    options?: { cause?: unknown },
  ) {
    super(message, 'INSUFFICIENT_STORAGE', 507, options);
  }
}

/** A backup file that cannot be read whole: not a backup, a newer format, truncated or altered. */
export class BackupInvalid extends DigestdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'BACKUP_INVALID', 500, options);
  }
}

/** A stored message no longer hashes to its digest: it is never served. */
export class Corrupt extends DigestdError {
  constructor() {
    super('The stored message is corrupt and cannot be served.', 'CORRUPT', 500);
  }
}

export class InternalError extends DigestdError {
  constructor(options?: { cause?: unknown }) {
    super('Internal server error.', 'INTERNAL_ERROR', 500, options);
  }
}

/** A setting failed validation; `problems` names every bad setting at once. */
export class InvalidConfig extends DigestdError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n  ${problems.join('\n  ')}`, 'INVALID_CONFIG', 500);
    this.problems = problems;
  }
}

/**
 * A store refuses us in a way no waiting fixes: the file system denies its directory, the database
 * refuses the user or the password, knows no such database, or denies the table.
 */
export class StoreRefused extends DigestdError {
  constructor(message: string, options: { cause: unknown }) {
    super(message, 'STORE_REFUSED', 500, options);
  }
}

/** The server cannot bind its address (taken, not this machine's, not permitted): no retry fixes it. */
export class ListenFailed extends DigestdError {
  constructor(message: string, options: { cause: unknown }) {
    super(message, 'LISTEN_FAILED', 500, options);
  }
}

// Connection protection: answered by node's HTTP parser hooks or before routing.

export class UriTooLong extends DigestdError {
  constructor(limitBytes: number) {
    super(`The request URL is longer than the limit of ${limitBytes} bytes.`, 'URI_TOO_LONG', 414);
  }
}

export class HeadersTooLarge extends DigestdError {
  constructor() {
    super('The request line and headers are larger than the server accepts.', 'HEADERS_TOO_LARGE', 431);
  }
}

export class RequestTimeout extends DigestdError {
  constructor() {
    super('The request was not received in time.', 'REQUEST_TIMEOUT', 408);
  }
}

export class MalformedRequest extends DigestdError {
  constructor() {
    super('The request is not valid HTTP/1.1.', 'MALFORMED_REQUEST', 400);
  }
}

/** A request framed with a transfer coding other than chunked (RFC 9112 6.1 answers 501). */
export class UnsupportedTransferCoding extends DigestdError {
  constructor(coding: string) {
    super(
      `The transfer coding "${coding}" is not supported; send the body with Content-Length or chunked alone.`,
      'UNSUPPORTED_TRANSFER_CODING',
      501,
    );
  }
}

/** An Expect header other than 100-continue (RFC 9110 10.1.1). */
export class ExpectationFailed extends DigestdError {
  constructor(expectation: string) {
    super(
      `The expectation "${expectation}" cannot be met; only 100-continue is supported.`,
      'EXPECTATION_FAILED',
      417,
    );
  }
}

/**
 * What a failed system call says, without Node's code and call: "ENOENT: no such file or
 * directory, open '/x'" -> "no such file or directory".
 */
export function systemErrorReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return /^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message;
}
