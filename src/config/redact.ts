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

/** A store URL as it may be logged or printed: its password replaced. */
export function redactStoreUrl(url: string): string {
  return url.replace(/^([a-z-]+:\/\/[^:/@]*:)[^@/]*@/i, '$1[redacted]@');
}
