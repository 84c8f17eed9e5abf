import { settingsHelp } from '../config.js';
import { DigestdError, InvalidConfig } from '../errors.js';
import { VERSION } from '../version.js';
import { migrate } from './migrate.js';
import { serve } from './serve.js';
import { verify } from './verify.js';

const version = VERSION;

const USAGE = `digestd ${version}: a content-addressed message store over HTTPS.

Usage:
  digestd serve [options]                     serve the HTTP API
  digestd migrate --from <url> --to <url>     copy every message between stores, checking each digest
  digestd verify [--store <url>]              re-hash every stored message; exit 1 if any mismatch
  digestd --help                              show this help
  digestd --version                           print the version

Options of serve (each also read from its environment variable; flags win):
${settingsHelp('serve')}

Options of migrate:
${settingsHelp('migrate')}

Options of verify:
${settingsHelp('verify')}
`;

const commands: Record<string, (argv: readonly string[]) => Promise<void>> = { serve, migrate, verify };

/** Exit status for usage and configuration mistakes. */
export const EXIT_USAGE = 2;

async function main(argv: readonly string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(USAGE);
    if (first === undefined) process.exitCode = EXIT_USAGE;
    return;
  }
  if (first === '--version' || first === '-v') {
    process.stdout.write(`${version}\n`);
    return;
  }
  const command = Object.hasOwn(commands, first) ? commands[first] : undefined;
  if (command === undefined) {
    process.stderr.write(`digestd: unknown command "${first}"\n\n${USAGE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(USAGE);
    return;
  }
  await command(rest);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof InvalidConfig) {
    process.stderr.write(`digestd: ${error.message}\n`);
    process.exit(EXIT_USAGE);
  }
  const cause =
    error instanceof DigestdError && error.cause instanceof Error ? `: ${error.cause.message}` : '';
  process.stderr.write(`digestd: ${error instanceof Error ? error.message : String(error)}${cause}\n`);
  process.exit(1);
});
