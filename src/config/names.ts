import { SCHEMA, type Command, type GroupName, type Schema, type SettingSpec } from './schema.js';

/** One setting with the names derived for it. */
export interface Setting {
  group: GroupName;
  key: string;
  spec: SettingSpec;
  /** The flag without its dashes. */
  flag: string;
  env: string;
  /** The setting's former flag (without dashes) and environment variable, still accepted. */
  former?: { flag: string; env: string } | undefined;
}

/** A unit a key may end in, and the placeholder --help shows for it; the flag leaves it out. */
const KEY_UNITS = [
  ['Ms', 'MS'],
  ['Seconds', 'SECONDS'],
  ['Days', 'DAYS'],
  ['Bytes', 'BYTES'],
] as const;

const kebab = (camel: string) => camel.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
export const unitOf = (key: string) => KEY_UNITS.find(([suffix]) => key.endsWith(suffix));

/** Every setting in schema order, with its flag and environment variable. */
export const SETTINGS: readonly Setting[] = Object.entries(SCHEMA).flatMap(([group, { prefix, settings }]) =>
  Object.entries(settings as Record<string, SettingSpec>).map(([key, spec]) => {
    const unit = unitOf(key);
    const stem = kebab(unit === undefined ? key : key.slice(0, -unit[0].length));
    const flag = spec.flag ?? (prefix === 'both' ? `${group}-${stem}` : stem);
    const envOf = (flagName: string) => {
      const words = prefix === 'env' ? `${group}-${flagName}` : flagName;
      return `DIGESTD_${words.replaceAll('-', '_').toUpperCase()}`;
    };
    const { formerFlag } = spec;
    return {
      group: group as GroupName,
      key,
      spec,
      flag,
      env: envOf(flag),
      former: formerFlag === undefined ? undefined : { flag: formerFlag, env: envOf(formerFlag) },
    };
  }),
);

/** One setting by group and key, for messages that name it. */
export function settingOf<Group extends GroupName>(
  group: Group,
  key: keyof Schema[Group]['settings'] & string,
): Setting {
  const setting = SETTINGS.find((candidate) => candidate.group === group && candidate.key === key);
  if (setting === undefined) throw new Error(`no setting ${group}.${key}`);
  return setting;
}

/** A setting's flag, for messages: `--tls-cert`. */
export function flagOf<Group extends GroupName>(
  group: Group,
  key: keyof Schema[Group]['settings'] & string,
): string {
  return `--${settingOf(group, key).flag}`;
}

/** A setting's flag and environment variable, for messages: `--from (DIGESTD_MIGRATE_FROM)`. */
export function namesOf<Group extends GroupName>(
  group: Group,
  key: keyof Schema[Group]['settings'] & string,
): string {
  return `${flagOf(group, key)} (${settingOf(group, key).env})`;
}

/** The settings a subcommand takes, in schema order. */
export function settingsOf(command: Command): Setting[] {
  return SETTINGS.filter(({ spec }) => (spec.commands ?? ['serve']).includes(command));
}
