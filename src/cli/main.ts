import { settingsHelp, wrapText } from '../config/help.js';
import { DigestdError, InvalidConfig } from '../errors.js';
import { writeStderr } from '../log/stdio.js';
import { VERSION } from '../version.js';
import { backup } from './backup.js';
import { migrate } from './migrate.js';
import { remove } from './remove.js';
import { restore } from './restore.js';
import { serve } from './serve.js';
import { verify } from './verify.js';

const version = VERSION;

/** Each subcommand's usage line and what it does. */
const SUBCOMMANDS = {
  serve: ['digestd serve [options]', 'serve the HTTP API'],
  migrate: [
    'digestd migrate --from <url> --to <url>',
    'copy every message between stores, checking each digest',
  ],
  verify: [
    'digestd verify [--store <url> | --backup <file>]',
    're-hash every stored (or backed-up) message; exit 1 if any mismatch',
  ],
  backup: [
    'digestd backup [--store <url>] --to <file>',
    'write every message to a backup file while the store serves',
  ],
  restore: ['digestd restore --from <file> --to <url>', 'write every message of a backup file into a store'],
  remove: [
    'digestd remove [--store <url>] [--from <file>] <digest>...',
    'take messages down: delete them and refuse them on every node',
  ],
} as const;

/** Columns of help text: the terminal's, else 80. */
const width = () => process.stdout.columns || 80;

const usageLine = (usage: string, what: string) => wrapText(`  ${usage.padEnd(44)}`, what, 46, width());

const usage = () => `digestd ${version}: a content-addressed message store over HTTPS.

Usage:
${Object.values(SUBCOMMANDS)
  .map(([usage, what]) => usageLine(usage, what))
  .join('\n')}
${usageLine('digestd <command> --help', "show a command's own options")}
${usageLine('digestd --help', 'show this help')}
${usageLine('digestd --version', 'print the version')}

Options of serve (each also read from its environment variable; flags win):
${settingsHelp('serve', width())}

Options of migrate:
${settingsHelp('migrate', width())}

Options of verify:
${settingsHelp('verify', width())}

Options of backup:
${settingsHelp('backup', width())}

Options of restore:
${settingsHelp('restore', width())}

Options of remove:
${settingsHelp('remove', width())}
`;

const commands: Record<string, (argv: readonly string[]) => Promise<void>> = {
  serve,
  migrate,
  verify,
  backup,
  restore,
  remove,
};

/** Exit status for usage and configuration mistakes. */
export const EXIT_USAGE = 2;

async function main(argv: readonly string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(usage());
    if (first === undefined) process.exitCode = EXIT_USAGE;
    return;
  }
  if (first === '--version' || first === '-v') {
    process.stdout.write(`${version}\n`);
    return;
  }
  const command = Object.hasOwn(commands, first) ? commands[first] : undefined;
  if (command === undefined) {
    process.stderr.write(`digestd: unknown command "${first}"\n\n${usage()}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    const name = first as keyof typeof SUBCOMMANDS;
    const [usage, what] = SUBCOMMANDS[name];
    const env = name === 'serve' ? ' (each also read from its environment variable; flags win)' : '';
    const sentence = `${what.charAt(0).toUpperCase()}${what.slice(1)}.`;
    process.stdout.write(
      `Usage: ${usage}\n\n${sentence}\n\nOptions${env}:\n${settingsHelp(name, width())}\n`,
    );
    return;
  }
  await command(rest);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof InvalidConfig) {
    // One problem is one line; several are listed under a heading.
    writeStderr(`digestd: ${error.problems.length === 1 ? error.problems[0] : error.message}\n`);
    process.exit(EXIT_USAGE);
  }
  // One sentence: what failed, then why in brackets.
  const message = error instanceof Error ? error.message : String(error);
  const cause =
    error instanceof DigestdError && error.cause instanceof Error
      ? `${message.replace(/\.$/, '')} (${error.cause.message.replace(/\.$/, '')}).`
      : message;
  writeStderr(`digestd: ${cause}\n`);
  process.exit(1);
});
