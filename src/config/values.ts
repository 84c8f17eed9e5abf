import { InvalidConfig } from '../errors.js';
import { parseStoreUrl } from '../store/url.js';
import { MiB, type SettingSpec } from './schema.js';

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: MiB,
  mb: MiB,
  mib: MiB,
  g: 1024 * MiB,
  gb: 1024 * MiB,
  gib: 1024 * MiB,
};

const RATE_WINDOWS: Record<string, number> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
};

/** A value as given (environment text, a flag, repeated flags) parsed by its setting's kind, or why not. */
export function parseValue(
  spec: SettingSpec,
  raw: string | boolean | readonly string[],
): { value?: unknown; problem?: string } {
  if (spec.kind === 'list') {
    // From the environment: one comma-separated string; from flags: one string per flag.
    const given: readonly string[] =
      typeof raw === 'string' ? raw.split(',') : typeof raw === 'boolean' ? [] : raw;
    const items = given.map((item) => item.trim()).filter((item) => item !== '');
    return items.length === 0 ? { problem: 'must not be empty' } : { value: Object.freeze(items) };
  }
  if (typeof raw !== 'string' && typeof raw !== 'boolean') return { problem: 'given more than once' };
  if (spec.kind === 'rate') {
    const match = /^(\d+)\s*\/\s*([a-z]+)$/i.exec(String(raw).trim());
    const windowMs = RATE_WINDOWS[match?.[2]?.toLowerCase() ?? ''];
    const max = Number(match?.[1]);
    if (!match || windowMs === undefined || !Number.isSafeInteger(max) || max < 1) {
      return { problem: `expected a rate such as 100/s, 600/min or 10000/h, got "${String(raw)}"` };
    }
    return { value: Object.freeze({ max, windowMs }) };
  }
  if (spec.kind === 'boolean') {
    if (typeof raw === 'boolean') return { value: raw };
    const lowered = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(lowered)) return { value: true };
    if (['0', 'false', 'no', 'off'].includes(lowered)) return { value: false };
    return { problem: `expected true or false, got "${raw}"` };
  }
  const text = String(raw).trim();
  switch (spec.kind) {
    case 'string':
      return text === '' ? { problem: 'must not be empty' } : { value: text };
    case 'store':
      try {
        parseStoreUrl(text);
        return { value: text };
      } catch (error) {
        return { problem: (error as InvalidConfig).problems.join('; ') };
      }
    case 'choice': {
      const choices = spec.choices ?? [];
      return choices.includes(text)
        ? { value: text }
        : { problem: `expected one of ${choices.join(', ')}, got "${text}"` };
    }
    case 'integer':
    case 'bytes': {
      const match = /^(\d+)\s*([a-z]*)$/i.exec(text);
      const unit =
        spec.kind === 'bytes' ? BYTE_UNITS[match?.[2]?.toLowerCase() ?? ''] : match?.[2] ? undefined : 1;
      if (!match || unit === undefined) {
        return {
          problem:
            spec.kind === 'bytes'
              ? `expected a byte count such as 1048576 or 1MiB, got "${text}"`
              : `expected a whole number, got "${text}"`,
        };
      }
      const value = Number(match[1]) * unit;
      if (!Number.isSafeInteger(value)) return { problem: `"${text}" is too large` };
      if (spec.min !== undefined && value < spec.min) return { problem: `must be at least ${spec.min}` };
      if (spec.max !== undefined && value > spec.max) return { problem: `must be at most ${spec.max}` };
      return { value };
    }
  }
}
