import { settingsOf, unitOf } from './names.js';
import { MiB, type Command, type SettingSpec } from './schema.js';

/** A default as a person reads it: byte sizes in KiB/MiB when they divide evenly. */
function formatDefault(spec: SettingSpec): string {
  const value = spec.default;
  if (spec.defaultHelp !== undefined) return spec.defaultHelp;
  if (spec.kind === 'bytes' && typeof value === 'number' && value > 0) {
    if (value % MiB === 0) return `${value / MiB}MiB`;
    if (value % 1024 === 0) return `${value / 1024}KiB`;
  }
  return String(value);
}

/** The options part of --help for one subcommand, generated from the schema. */
export function settingsHelp(command: Command = 'serve'): string {
  const rows = settingsOf(command).map(({ key, spec, flag, env }) => {
    const placeholder = spec.placeholder ?? unitOf(key)?.[1] ?? spec.kind.toUpperCase();
    const shown = spec.kind === 'boolean' ? `--${flag}, --no-${flag}` : `--${flag} ${placeholder}`;
    const fallback = spec.default === undefined ? '' : ` (default: ${formatDefault(spec)})`;
    return [shown, `${spec.help}${fallback} [env ${env}]`] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help}`).join('\n');
}
