import { parseArgs } from 'node:util';
import { InvalidConfig } from './errors.js';

/**
 * The one settings schema. Each setting has a type, a default, an environment variable and a flag,
 * and a help line. Precedence: defaults < environment < flags. Every bad value is reported at once.
 * Nothing outside this file reads process.env.
 */

type Kind = 'string' | 'integer' | 'boolean' | 'bytes' | 'level';

interface SettingSpec {
  kind: Kind;
  flag: string;
  env: string;
  help: string;
  default?: string | number | boolean;
  /** Inclusive bounds for integer and byte settings. */
  min?: number;
  max?: number;
  /** Value placeholder in --help. */
  placeholder?: string;
  /** Hide the value in logs (passwords, tokens). */
  secret?: boolean;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const MiB = 1024 * 1024;

/** Settings of `digestd serve`, in --help order. */
export const SETTINGS = {
  port: {
    kind: 'integer',
    flag: 'port',
    env: 'DIGESTD_PORT',
    default: 8443,
    min: 0,
    max: 65535,
    help: 'TCP port to listen on (0 picks a free port).',
  },
  host: {
    kind: 'string',
    flag: 'host',
    env: 'DIGESTD_HOST',
    default: '0.0.0.0',
    help: 'Address to listen on (use :: for all IPv6 and IPv4 addresses).',
  },
  dataDir: {
    kind: 'string',
    flag: 'data-dir',
    env: 'DIGESTD_DATA_DIR',
    default: './data',
    placeholder: 'DIR',
    help: 'Directory for the embedded store and the generated TLS certificate.',
  },
  tls: {
    kind: 'boolean',
    flag: 'tls',
    env: 'DIGESTD_TLS',
    default: true,
    help: 'Serve HTTPS. --no-tls serves plain HTTP, for use behind a TLS-terminating proxy.',
  },
  tlsCert: {
    kind: 'string',
    flag: 'tls-cert',
    env: 'DIGESTD_TLS_CERT',
    placeholder: 'FILE',
    help: 'PEM certificate (chain). Without it a self-signed one is made in <data-dir>/tls/.',
  },
  tlsKey: {
    kind: 'string',
    flag: 'tls-key',
    env: 'DIGESTD_TLS_KEY',
    placeholder: 'FILE',
    help: 'PEM private key matching --tls-cert.',
  },
  maxMessageBytes: {
    kind: 'bytes',
    flag: 'max-message-bytes',
    env: 'DIGESTD_MAX_MESSAGE_BYTES',
    default: 1 * MiB,
    min: 1,
    max: 512 * MiB,
    help: 'Largest message accepted, in UTF-8 bytes (suffixes K, M, G; KiB, MiB, GiB). Larger answers 413.',
  },
  logLevel: {
    kind: 'level',
    flag: 'log-level',
    env: 'DIGESTD_LOG_LEVEL',
    default: 'info',
    help: `Log level: ${LOG_LEVELS.join(', ')}.`,
  },
  // Connection protection
  headersTimeout: {
    kind: 'integer',
    flag: 'headers-timeout',
    env: 'DIGESTD_HEADERS_TIMEOUT',
    default: 10_000,
    min: 1,
    max: 3_600_000,
    placeholder: 'MS',
    help: 'Milliseconds a client has for the TLS handshake, and again for sending the request line and headers; slower ones get 408 and are cut off.',
  },
  requestTimeout: {
    kind: 'integer',
    flag: 'request-timeout',
    env: 'DIGESTD_REQUEST_TIMEOUT',
    default: 60_000,
    min: 1,
    max: 3_600_000,
    placeholder: 'MS',
    help: 'Milliseconds a client has for sending a whole request, body included (at least --headers-timeout); slower ones get 408 and are cut off.',
  },
  keepAliveTimeout: {
    kind: 'integer',
    flag: 'keep-alive-timeout',
    env: 'DIGESTD_KEEP_ALIVE_TIMEOUT',
    default: 72_000,
    min: 1,
    max: 3_600_000,
    placeholder: 'MS',
    help: 'Milliseconds an idle keep-alive connection stays open (longer than a load balancer idle timeout of 60 s).',
  },
  maxHeaderBytes: {
    kind: 'bytes',
    flag: 'max-header-bytes',
    env: 'DIGESTD_MAX_HEADER_BYTES',
    default: 16 * 1024,
    min: 1024,
    max: 1 * MiB,
    help: 'Largest request line plus headers, in bytes. Larger answers 431.',
  },
  maxUrlBytes: {
    kind: 'bytes',
    flag: 'max-url-bytes',
    env: 'DIGESTD_MAX_URL_BYTES',
    default: 8 * 1024,
    min: 128,
    max: 1 * MiB,
    help: 'Longest request URL, in bytes. Longer answers 414 (431 beyond --max-header-bytes).',
  },
  maxConnections: {
    kind: 'integer',
    flag: 'max-connections',
    env: 'DIGESTD_MAX_CONNECTIONS',
    default: 10_000,
    min: 0,
    max: 1_000_000,
    help: 'Most open connections per serving process; more are closed on accept (0: no limit).',
  },
} as const satisfies Record<string, SettingSpec>;

type Settings = typeof SETTINGS;
type ValueOf<S extends SettingSpec> = S['kind'] extends 'integer' | 'bytes'
  ? number
  : S['kind'] extends 'boolean'
    ? boolean
    : S['kind'] extends 'level'
      ? LogLevel
      : string;

/** The validated, frozen configuration passed down from the CLI. */
export type Config = Readonly<{
  [K in keyof Settings]: 'default' extends keyof Settings[K]
    ? ValueOf<Settings[K]>
    : ValueOf<Settings[K]> | undefined;
}>;

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

function parseValue(spec: SettingSpec, raw: string | boolean): { value?: unknown; problem?: string } {
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
    case 'level':
      return (LOG_LEVELS as readonly string[]).includes(text)
        ? { value: text }
        : { problem: `expected one of ${LOG_LEVELS.join(', ')}, got "${text}"` };
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

function parseArgsOptions(): Record<string, { type: 'string' | 'boolean' }> {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const spec of Object.values(SETTINGS) as SettingSpec[]) {
    if (spec.kind === 'boolean') {
      options[spec.flag] = { type: 'boolean' };
      options[`no-${spec.flag}`] = { type: 'boolean' };
    } else {
      options[spec.flag] = { type: 'string' };
    }
  }
  return options;
}

/**
 * Builds the configuration from the environment and command-line flags.
 * Throws InvalidConfig listing every bad setting by flag and environment variable.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({
      args: [...argv],
      options: parseArgsOptions(),
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new InvalidConfig([(error as Error).message]);
  }

  const config: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(SETTINGS) as [string, SettingSpec][]) {
    let raw: string | boolean | undefined;
    let source = '';
    const fromEnv = env[spec.env];
    if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      source = spec.env;
    }
    const fromFlag = flags[spec.flag];
    if (fromFlag !== undefined) {
      raw = fromFlag;
      source = `--${spec.flag}`;
    }
    if (spec.kind === 'boolean' && flags[`no-${spec.flag}`] === true) {
      raw = false;
      source = `--no-${spec.flag}`;
    }
    if (raw === undefined) {
      config[name] = spec.default;
      continue;
    }
    const { value, problem } = parseValue(spec, raw);
    if (problem !== undefined) problems.push(`${source}: ${problem}`);
    else config[name] = value;
  }

  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    problems.push('--tls-cert and --tls-key: give both or neither');
  }
  if ((config.headersTimeout as number) > (config.requestTimeout as number)) {
    problems.push('--headers-timeout must not be longer than --request-timeout');
  }
  if (problems.length > 0) throw new InvalidConfig(problems);
  return Object.freeze(config) as Config;
}

/** The configuration as it may be logged: secrets replaced. */
export function redactConfig(config: Config): Record<string, unknown> {
  const shown: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(SETTINGS) as [string, SettingSpec][]) {
    const value = (config as Record<string, unknown>)[name];
    shown[name] = spec.secret && value !== undefined ? '[redacted]' : value;
  }
  return shown;
}

/** The options part of --help, generated from the schema. */
export function settingsHelp(): string {
  const rows = (Object.values(SETTINGS) as SettingSpec[]).map((spec) => {
    const flag =
      spec.kind === 'boolean'
        ? `--${spec.flag}, --no-${spec.flag}`
        : `--${spec.flag} ${spec.placeholder ?? spec.kind.toUpperCase()}`;
    const fallback = spec.default === undefined ? '' : ` (default: ${String(spec.default)})`;
    return [flag, `${spec.help}${fallback} [env ${spec.env}]`] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help}`).join('\n');
}
