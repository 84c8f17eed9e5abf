import { SETTINGS } from './names.js';
import type { Config, GroupName } from './schema.js';

/** The configuration as it may be logged, group by group: secrets replaced. */
export function redactConfig(config: Config): Record<GroupName, Record<string, unknown>> {
  const shown = {} as Record<GroupName, Record<string, unknown>>;
  for (const { group, key, spec } of SETTINGS) {
    const value = (config[group] as Record<string, unknown>)[key];
    (shown[group] ??= {})[key] =
      spec.secret && value !== undefined
        ? '[redacted]'
        : spec.kind === 'store' && typeof value === 'string'
          ? redactStoreUrl(value)
          : value;
  }
  return shown;
}

/**
 * The settings that differ from their defaults, by flag, secrets replaced: the configuration in a
 * line a person reads (`{"port":0,"store":"postgres://app@db/digestd"}`).
 */
export function changedSettings(config: Config): Record<string, unknown> {
  const shown = redactConfig(config);
  const changed: Record<string, unknown> = {};
  for (const { group, key, spec, flag } of SETTINGS) {
    const value = shown[group][key];
    if (value !== undefined && JSON.stringify(value) !== JSON.stringify(spec.default)) changed[flag] = value;
  }
  return changed;
}

/** A store URL as it may be logged or printed: its password replaced. */
export function redactStoreUrl(url: string): string {
  return url.replace(/^([a-z-]+:\/\/[^:/@]*:)[^@/]*@/i, '$1[redacted]@');
}
