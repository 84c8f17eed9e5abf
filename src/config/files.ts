import { readFile } from 'node:fs/promises';
import { InvalidConfig } from '../errors.js';
import { flagOf } from './names.js';
import type { Config } from './schema.js';

/**
 * The tokens given by a flag, then the lines of a token file (blank lines and lines starting with
 * # skipped). Throws InvalidConfig naming `flag` when that file cannot be read or holds no token.
 */
async function tokensOf(
  listed: readonly string[] | undefined,
  path: string | undefined,
  flag: string,
): Promise<string[]> {
  const tokens = [...(listed ?? [])];
  if (path === undefined) return tokens;
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

/** The write tokens of the protection settings: --write-token, then --write-token-file's lines. */
export function writeTokensOf(
  protection: Pick<Config['protection'], 'writeTokens' | 'writeTokenFile'>,
): Promise<string[]> {
  return tokensOf(protection.writeTokens, protection.writeTokenFile, flagOf('protection', 'writeTokenFile'));
}

/** The admin tokens of the protection settings: --admin-token, then --admin-token-file's lines. */
export function adminTokensOf(
  protection: Pick<Config['protection'], 'adminTokens' | 'adminTokenFile'>,
): Promise<string[]> {
  return tokensOf(protection.adminTokens, protection.adminTokenFile, flagOf('protection', 'adminTokenFile'));
}
