import { readFileSync } from 'node:fs';

/** The version of this package, from package.json (read once). */
export const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
