import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

const root = new URL('../../', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');
const errors = readFileSync(new URL('src/errors.ts', root), 'utf8');

/** Errors that stop a command at start and are never an HTTP answer. */
const NOT_ANSWERS = new Set([
  'INVALID_CONFIG',
  'LISTEN_FAILED',
  'STORE_NOT_FOUND',
  'INVALID_TLS_FILES',
  'STORE_REFUSED',
  'BACKUP_INVALID',
]);

describe("the README's error table", () => {
  it('lists every code errors.ts answers with, with its status, and nothing else', () => {
    const declared = new Map<string, number>();
    for (const match of errors.matchAll(/'([A-Z][A-Z_]+)',\s*(\d{3})\b/g)) {
      if (!NOT_ANSWERS.has(match[1]!)) declared.set(match[1]!, Number(match[2]));
    }
    const listed = new Map<string, number>();
    for (const match of readme.matchAll(/^\| (\d{3}) +\| `([A-Z_]+)` +\|/gm)) {
      listed.set(match[2]!, Number(match[1]));
    }
    assert.ok(declared.size > 15, `found ${declared.size} codes in errors.ts`);
    const differences = [...new Set([...declared.keys(), ...listed.keys()])]
      .filter((code) => declared.get(code) !== listed.get(code))
      .map((code) => `${code}: errors.ts ${declared.get(code)}, README ${listed.get(code)}`);
    assert.deepEqual(differences, []);
  });
});
