/**
 * Every error digestd raises on purpose, with its machine code and HTTP status.
 * The HTTP layer turns these into `{"err_msg", "code"}` bodies in one place (src/http/app.ts).
 */
export class DigestdError extends Error {
  /** Stable, machine-readable code, e.g. `MESSAGE_NOT_FOUND`. */
  readonly code: string;
  /** HTTP status this error maps to. */
  readonly statusCode: number;

  constructor(message: string, code: string, statusCode: number, options?: { cause?: unknown }) {
    super(message, options);
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

export class RouteNotFound extends DigestdError {
  constructor(method: string, url: string) {
    super(`No route for ${method} ${url}.`, 'ROUTE_NOT_FOUND', 404);
  }
}

export class MethodNotAllowed extends DigestdError {
  readonly allow: readonly string[];
  constructor(method: string, allow: readonly string[]) {
    super(`Method ${method} is not allowed here; use ${allow.join(' or ')}.`, 'METHOD_NOT_ALLOWED', 405);
    this.allow = allow;
  }
}

export class PayloadTooLarge extends DigestdError {
  constructor(limitBytes: number) {
    super(`The message is larger than the limit of ${limitBytes} bytes.`, 'PAYLOAD_TOO_LARGE', 413);
  }
}

export class UnsupportedMediaType extends DigestdError {
  constructor(accepted: readonly string[]) {
    super(
      `Unsupported Content-Type; send the body as ${accepted.join(' or ')}.`,
      'UNSUPPORTED_MEDIA_TYPE',
      415,
    );
  }
}

export class StoreUnavailable extends DigestdError {
  constructor(
    message = 'The message store is unavailable; try again shortly.',
    options?: { cause?: unknown },
  ) {
    super(message, 'STORE_UNAVAILABLE', 503, options);
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
