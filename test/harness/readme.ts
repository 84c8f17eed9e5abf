import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = new URL('../../', import.meta.url);

/**
 * The first shell block after `marker` (a phrase, or an HTML comment such as
 * `<!-- doc-test: name -->` that GitHub does not show) in `file` (relative to the repository), for
 * a test that runs it as written so that the documentation cannot drift from what works.
 */
export async function docBlock(file: string, marker: string): Promise<string> {
  const text = await readFile(fileURLToPath(new URL(file, root)), 'utf8');
  const at = text.indexOf(marker);
  assert.ok(at >= 0, `${file} has "${marker}"`);
  const block = /```sh\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(block?.[1], `a shell block follows "${marker}" in ${file}`);
  return block[1];
}

/** The README's first shell block after `marker` (see docBlock). */
export const readmeBlock = (marker: string): Promise<string> => docBlock('README.md', marker);
