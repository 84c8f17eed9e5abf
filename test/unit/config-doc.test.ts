import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { CONFIGURATION_DOC, configurationDoc } from '../../scripts/config-doc.js';
import { settingsOf } from '../../src/config/names.js';

describe('docs/configuration.md', () => {
  it('is what the settings schema generates (npm run docs:config rewrites it)', async () => {
    const written = await readFile(CONFIGURATION_DOC, 'utf8');
    assert.equal(written, await configurationDoc(), 'run npm run docs:config');
    for (const { flag, env } of settingsOf('serve')) {
      assert.ok(written.includes(`| \`--${flag}\``) && written.includes(`\`${env}\``), flag);
    }
  });
});
