import { parseDigest, type Digest } from '../../digest.js';
import {
  BadRequest,
  BatchTooLarge,
  InvalidDigest,
  InvalidMessage,
  PayloadTooLarge,
  UnsupportedMediaType,
} from '../../errors.js';
import { JSON_MEDIA_TYPE, RawMessage } from '../body.js';

/**
 * Reads the message routes' parsed bodies without coercion, with an error that names the item at
 * fault: a JSON schema would coerce, and its errors name schema paths rather than what to send.
 */

/**
 * Checks one message: a string that survives UTF-8 encoding unchanged and fits the limit. `label`
 * names it in errors (`"message"`, `messages[3]`).
 */
export function checkMessage(value: unknown, label: string, maxMessageBytes: number): string {
  if (typeof value !== 'string') {
    throw new InvalidMessage(`${label} must be a string, not ${value === null ? 'null' : typeof value}.`);
  }
  if (!value.isWellFormed()) {
    throw new InvalidMessage(`${label} contains a lone surrogate, which cannot be encoded as UTF-8.`);
  }
  // Each UTF-16 unit is at most 3 UTF-8 bytes, so short strings skip the exact count.
  if (value.length * 3 > maxMessageBytes && Buffer.byteLength(value, 'utf8') > maxMessageBytes) {
    throw new PayloadTooLarge(maxMessageBytes, label === '"message"' ? 'The message' : label);
  }
  return value;
}

/**
 * The message of a POST /messages body: an object whose own `message` passes checkMessage, or a
 * text/plain body.
 */
export function messageFromBody(body: unknown, maxMessageBytes: number): string {
  if (body instanceof RawMessage) {
    if (body.byteLength > maxMessageBytes) throw new PayloadTooLarge(maxMessageBytes);
    return body.text;
  }
  if (body === undefined) {
    throw new InvalidMessage('The request body is empty; send {"message": "<string>"} as application/json.');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidMessage('The body must be a JSON object such as {"message": "hello"}.');
  }
  if (!Object.hasOwn(body, 'message')) {
    throw new InvalidMessage('The body has no "message" field; send {"message": "<string>"}.');
  }
  return checkMessage((body as { message: unknown }).message, '"message"', maxMessageBytes);
}

/** The messages of a POST /messages/batch body ({"messages": [...]}), each passing checkMessage. */
export function messagesFromBody(body: unknown, limits: { batchMax: number; maxMessageBytes: number }) {
  const items = listFromBody(body, 'messages', limits.batchMax, (text) => new InvalidMessage(text));
  return items.map((item, index) => checkMessage(item, `messages[${index}]`, limits.maxMessageBytes));
}

/** The digests of a POST /messages/lookup body ({"digests": [...]}). */
export function digestsFromBody(body: unknown, batchMax: number): Digest[] {
  const items = listFromBody(body, 'digests', batchMax, (text) => new BadRequest(text));
  return items.map((item, index) => {
    const digest = typeof item === 'string' ? parseDigest(item) : undefined;
    if (digest === undefined) {
      throw new InvalidDigest(`digests[${index}] is not a digest: expected 64 hex digits.`);
    }
    return digest;
  });
}

/**
 * The array under `field` of a batch body, at most `limit` long. Structural problems throw
 * `invalid` errors.
 */
function listFromBody(
  body: unknown,
  field: string,
  limit: number,
  invalid: (message: string) => Error,
): unknown[] {
  const example = `{"${field}": [...]}`;
  if (body instanceof RawMessage) throw new UnsupportedMediaType([JSON_MEDIA_TYPE]);
  if (body === undefined) throw invalid(`The request body is empty; send ${example} as application/json.`);
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !Object.hasOwn(body, field)) {
    throw invalid(`The body must be a JSON object ${example}.`);
  }
  const list = (body as Record<string, unknown>)[field];
  if (!Array.isArray(list)) throw invalid(`"${field}" must be an array.`);
  if (list.length > limit) throw new BatchTooLarge(list.length, limit);
  return list;
}
