import { readFile } from 'node:fs/promises';
import { InvalidConfig } from '../errors.js';
import { flagOf } from './names.js';
import type { Config } from './schema.js';

/**
 * The write tokens of the protection settings: --write-token, then the lines of
 * --write-token-file (blank lines and lines starting with # skipped). Throws InvalidConfig when
 * that file cannot be read or holds no token.
 */
export async function writeTokensOf(
  protection: Pick<Config['protection'], 'writeTokens' | 'writeTokenFile'>,
): Promise<string[]> {
  const tokens = [...(protection.writeTokens ?? [])];
  const path = protection.writeTokenFile;
  if (path === undefined) return tokens;
  const flag = flagOf('protection', 'writeTokenFile');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidConfig([`${flag}: cannot read ${path}: ${(error as Error).message}`]);
  }
  const fromFile = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (fromFile.length === 0) throw new InvalidConfig([`${flag}: ${path} holds no token`]);
  return [...tokens, ...fromFile];
}
