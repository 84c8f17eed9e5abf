import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const readmePath = fileURLToPath(new URL('../../README.md', import.meta.url));

/**
 * The README's first shell block after `marker` (a phrase, or an HTML comment such as
 * `<!-- readme-test: name -->` that GitHub does not show), for a test that runs it as written so
 * that the README cannot drift from what works.
 */
export async function readmeBlock(marker: string): Promise<string> {
  const readme = await readFile(readmePath, 'utf8');
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `the README has "${marker}"`);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(block?.[1], `a shell block follows "${marker}"`);
  return block[1];
}
