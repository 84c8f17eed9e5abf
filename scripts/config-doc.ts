/**
 * Writes docs/configuration.md, every setting of every subcommand, from the settings schema
 * (`npm run docs:config`); a unit test fails while the file differs from what this generates.
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { formatDefault } from '../src/config/help.js';
import { settingsOf } from '../src/config/names.js';
import type { Command } from '../src/config/schema.js';

export const CONFIGURATION_DOC = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));

const COMMANDS: readonly Command[] = ['serve', 'migrate', 'verify', 'backup', 'restore', 'remove'];

const cell = (text: string) => text.replaceAll('|', '\\|');

/** docs/configuration.md as the schema describes it, formatted as prettier formats the repository. */
export async function configurationDoc(): Promise<string> {
  const sections = COMMANDS.map((command) => {
    const rows = settingsOf(command).map(({ spec, flag, env }) => {
      const shown = spec.kind === 'boolean' ? `\`--${flag}\`, \`--no-${flag}\`` : `\`--${flag}\``;
      const fallback = spec.default === undefined ? '' : `\`${formatDefault(spec)}\``;
      return `| ${shown} | \`${env}\` | ${cell(fallback)} | ${cell(spec.help)} |`;
    });
    return [
      `## digestd ${command}`,
      '',
      '| Flag | Environment | Default | Meaning |',
      '| --- | --- | --- | --- |',
      ...rows,
    ].join('\n');
  });
  const former = COMMANDS.flatMap((command) => settingsOf(command))
    .filter((setting, index, all) => setting.former !== undefined && all.indexOf(setting) === index)
    .map(({ flag, former }) => `\`--${former?.flag}\` (\`${former?.env}\`) for \`--${flag}\``);
  const text = [
    '# Configuration',
    '',
    'Every setting of every subcommand, generated from `src/config/schema.ts` by `npm run docs:config`',
    '(a unit test fails while this file differs). `digestd <command> --help` prints the same list.',
    'Flags win over environment variables, which win over the defaults. Sizes take `K`, `M`, `G`,',
    '`KiB`, `MiB`, `GiB`; times are in the unit the text names.',
    '',
    ...sections.flatMap((section) => [section, '']),
    '## Former names',
    '',
    `Still accepted, never listed: ${former.join('; ')}. The current name wins when both are set.`,
    '',
  ].join('\n');
  return format(text, { ...(await resolveConfig(CONFIGURATION_DOC)), parser: 'markdown' });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeFile(CONFIGURATION_DOC, await configurationDoc());
  console.log(`wrote ${CONFIGURATION_DOC}`);
}
