import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InternalError, InvalidMessage, MessageNotFound, StoreUnavailable } from '../../src/errors.js';

test('a client error carries no stack trace, and the stack limit is left as it was', () => {
  const before = Error.stackTraceLimit;
  for (const error of [
    new MessageNotFound(),
    new InvalidMessage('"message" must be a string, not number.'),
  ]) {
    assert.ok(error.statusCode < 500);
    assert.equal(error.stack, `${error.name}: ${error.message}`);
  }
  assert.equal(Error.stackTraceLimit, before);
});

test('a server error keeps its stack trace and its cause for the log', () => {
  const cause = new Error('connection refused');
  for (const error of [
    new StoreUnavailable('The store does not answer.', { cause }),
    new InternalError({ cause }),
  ]) {
    assert.ok(error.statusCode >= 500);
    assert.match(String(error.stack), /errors\.test\.ts/);
    assert.equal(error.cause, cause);
  }
});
