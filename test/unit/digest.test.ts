import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { digestOf, formatDigest, parseDigest } from '../../src/digest.js';

describe('digest', () => {
  it('is the SHA-256 of the UTF-8 bytes', () => {
    assert.equal(
      formatDigest(digestOf('foo')),
      '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae',
    );
    assert.equal(
      formatDigest(digestOf('')),
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  it('parses 64 hex digits in either case into 32 bytes', () => {
    const lower = parseDigest('2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae');
    const upper = parseDigest('2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE');
    assert.equal(lower?.length, 32);
    assert.ok(lower?.equals(upper!));
  });

  it('refuses anything else', () => {
    for (const text of [
      '',
      'iWillReturn404',
      'a'.repeat(63),
      'a'.repeat(65),
      'g'.repeat(64),
      ' '.repeat(64),
      `${'a'.repeat(63)}g`,
      `${'a'.repeat(31)}z${'a'.repeat(32)}`,
      `${'a'.repeat(62)}é`,
    ]) {
      assert.equal(parseDigest(text), undefined, text);
    }
  });
});
