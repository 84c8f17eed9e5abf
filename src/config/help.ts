import { settingsOf, unitOf } from './names.js';
import { MiB, type Command, type SettingSpec } from './schema.js';

/** A default as a person reads it: byte sizes in KiB/MiB when they divide evenly. */
export function formatDefault(spec: SettingSpec): string {
  const value = spec.default;
  if (spec.defaultHelp !== undefined) return spec.defaultHelp;
  if (spec.kind === 'bytes' && typeof value === 'number' && value > 0) {
    if (value % MiB === 0) return `${value / MiB}MiB`;
    if (value % 1024 === 0) return `${value / 1024}KiB`;
  }
  return String(value);
}

/**
 * `text` in lines of at most `width` characters (a longer word stays whole), the first after
 * `first` and the others indented by `indent` spaces.
 */
export function wrapText(first: string, text: string, indent: number, width: number): string {
  const lines: string[] = [];
  let line = first;
  for (const word of text.split(/\s+/)) {
    const atStart = line === first;
    if (!atStart && line.length + 1 + word.length > width) {
      lines.push(line);
      line = ' '.repeat(indent) + word;
    } else line += atStart ? word : ` ${word}`;
  }
  lines.push(line);
  return lines.join('\n');
}

/** Fewest characters of help text per line beside the flags; narrower terminals get it below them. */
const MIN_HELP_COLUMN = 32;

/**
 * The options part of --help for one subcommand, generated from the schema and wrapped to
 * `width` columns (the terminal's).
 */
export function settingsHelp(command: Command = 'serve', width = 80): string {
  const rows = settingsOf(command).map(({ key, spec, flag, env }) => {
    const placeholder = spec.placeholder ?? unitOf(key)?.[1] ?? spec.kind.toUpperCase();
    const shown = spec.kind === 'boolean' ? `--${flag}, --no-${flag}` : `--${flag} ${placeholder}`;
    const fallback = spec.default === undefined ? '' : ` (default: ${formatDefault(spec)})`;
    return [shown, `${spec.help}${fallback} [env ${env}]`] as const;
  });
  const column = Math.max(...rows.map(([flag]) => flag.length)) + 4;
  return rows
    .map(([flag, help]) =>
      width - column >= MIN_HELP_COLUMN
        ? wrapText(`  ${flag.padEnd(column - 2)}`, help, column, width)
        : `  ${flag}\n${wrapText('      ', help, 6, width)}`,
    )
    .join('\n');
}
