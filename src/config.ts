import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { InvalidConfig } from './errors.js';
import { parseStoreUrl } from './store/url.js';

/**
 * The one settings schema. Each setting has a type, a default, an environment variable and a flag,
 * and a help line. Precedence: defaults < environment < flags. Every bad value is reported at once.
 * Nothing outside this file reads process.env.
 */

/** The subcommands that take settings. */
export type Command = 'serve' | 'migrate' | 'verify';
type Kind = 'string' | 'integer' | 'boolean' | 'bytes' | 'level' | 'store' | 'list' | 'rate';

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
  /** Subcommands that take this setting. @default ['serve'] */
  commands?: readonly Command[];
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
    default: '::',
    help: 'Address to listen on; the default :: serves IPv6 and IPv4 (0.0.0.0 where the machine has no IPv6).',
  },
  dataDir: {
    kind: 'string',
    flag: 'data-dir',
    env: 'DIGESTD_DATA_DIR',
    default: './data',
    placeholder: 'DIR',
    help: 'Directory for the embedded store and the generated TLS certificate.',
    commands: ['serve', 'verify'],
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
    help: 'PEM certificate (chain). Without it a local CA in <data-dir>/tls/ signs one (trust its ca.pem).',
  },
  tlsKey: {
    kind: 'string',
    flag: 'tls-key',
    env: 'DIGESTD_TLS_KEY',
    placeholder: 'FILE',
    help: 'PEM private key matching --tls-cert.',
  },
  tlsSan: {
    kind: 'list',
    flag: 'tls-san',
    env: 'DIGESTD_TLS_SAN',
    placeholder: 'NAME',
    help: 'Another DNS name or IP address for the local certificate besides localhost, 127.0.0.1 and ::1; repeatable.',
  },
  acmeDomain: {
    kind: 'list',
    flag: 'acme-domain',
    env: 'DIGESTD_ACME_DOMAIN',
    placeholder: 'NAME',
    help: "Obtain and renew a certificate for this domain from an ACME CA (Let's Encrypt); repeatable.",
  },
  acmeEmail: {
    kind: 'string',
    flag: 'acme-email',
    env: 'DIGESTD_ACME_EMAIL',
    placeholder: 'ADDRESS',
    help: 'Contact address of the ACME account (expiry notices).',
  },
  acmeDirectory: {
    kind: 'string',
    flag: 'acme-directory',
    env: 'DIGESTD_ACME_DIRECTORY',
    default: 'https://acme-v02.api.letsencrypt.org/directory',
    placeholder: 'URL',
    help: "ACME directory URL; Let's Encrypt staging: https://acme-staging-v02.api.letsencrypt.org/directory.",
  },
  acmeCaCert: {
    kind: 'list',
    flag: 'acme-ca-cert',
    env: 'DIGESTD_ACME_CA_CERT',
    placeholder: 'FILE',
    help: "PEM file of CAs to trust for the ACME server's own HTTPS (private CAs, tests); repeatable.",
  },
  acmeChallenge: {
    kind: 'string',
    flag: 'acme-challenge',
    env: 'DIGESTD_ACME_CHALLENGE',
    default: 'http-01',
    placeholder: 'TYPE',
    help: 'http-01 (answered on --acme-http-port) or tls-alpn-01 (answered on the HTTPS port).',
  },
  acmeHttpPort: {
    kind: 'integer',
    flag: 'acme-http-port',
    env: 'DIGESTD_ACME_HTTP_PORT',
    default: 80,
    min: 1,
    max: 65535,
    help: 'Plain-HTTP port that answers http-01 challenges and redirects every other request to HTTPS.',
  },
  acmeRenewBefore: {
    kind: 'integer',
    flag: 'acme-renew-before',
    env: 'DIGESTD_ACME_RENEW_BEFORE',
    default: 30,
    min: 1,
    max: 3650,
    placeholder: 'DAYS',
    help: 'Renew the ACME certificate this many days before it expires (at most half its lifetime).',
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
  // Scale-out stores
  store: {
    kind: 'store',
    flag: 'store',
    env: 'DIGESTD_STORE',
    placeholder: 'URL',
    help: 'Message store: lmdb:<dir> (default: lmdb:<data-dir>), postgres://user@host:port/db, redis://host:port, redis-cluster://host:port,host:port,...',
    commands: ['serve', 'verify'],
  },
  from: {
    kind: 'store',
    flag: 'from',
    env: 'DIGESTD_MIGRATE_FROM',
    placeholder: 'URL',
    help: 'Store to copy from (a store URL as for --store).',
    commands: ['migrate'],
  },
  to: {
    kind: 'store',
    flag: 'to',
    env: 'DIGESTD_MIGRATE_TO',
    placeholder: 'URL',
    help: 'Store to copy into (a store URL as for --store).',
    commands: ['migrate'],
  },
  storeTimeout: {
    kind: 'integer',
    flag: 'store-timeout',
    env: 'DIGESTD_STORE_TIMEOUT',
    default: 2000,
    min: 10,
    max: 600_000,
    placeholder: 'MS',
    help: 'Milliseconds any store operation may take before it fails with STORE_UNAVAILABLE (a request then answers 503).',
    commands: ['serve', 'migrate', 'verify'],
  },
  cacheBytes: {
    kind: 'bytes',
    flag: 'cache-bytes',
    env: 'DIGESTD_CACHE_BYTES',
    default: 64 * MiB,
    min: 0,
    max: 64 * 1024 * MiB,
    help: 'In-process LRU cache of messages in front of PostgreSQL and Redis, in bytes (0 turns it off).',
  },
  redisWaitReplicas: {
    kind: 'integer',
    flag: 'redis-wait-replicas',
    env: 'DIGESTD_REDIS_WAIT_REPLICAS',
    min: 0,
    max: 64,
    placeholder: 'N',
    help: 'Redis replicas that must confirm each write (WAIT) before 201; a shard with fewer answers writes 503 (default: 0 until a replica is seen, then 1).',
    commands: ['serve', 'migrate'],
  },
  // HTTP: batches, metrics, protection
  batchMax: {
    kind: 'integer',
    flag: 'batch-max',
    env: 'DIGESTD_BATCH_MAX',
    default: 1000,
    min: 1,
    max: 1_000_000,
    help: 'Most items in one POST /messages/batch or /messages/lookup (the body limit applies too).',
  },
  metricsPort: {
    kind: 'integer',
    flag: 'metrics-port',
    env: 'DIGESTD_METRICS_PORT',
    min: 0,
    max: 65535,
    help: 'Serve GET /metrics on this separate port (plain HTTP) instead of the public one.',
  },
  metricsHost: {
    kind: 'string',
    flag: 'metrics-host',
    env: 'DIGESTD_METRICS_HOST',
    default: '127.0.0.1',
    help: 'Address of the --metrics-port listener.',
  },
  writeToken: {
    kind: 'list',
    flag: 'write-token',
    env: 'DIGESTD_WRITE_TOKEN',
    placeholder: 'TOKEN',
    secret: true,
    help: 'Require "Authorization: Bearer <token>" on writes; repeat the flag (or comma-separate in the env) for several tokens.',
  },
  writeTokenFile: {
    kind: 'string',
    flag: 'write-token-file',
    env: 'DIGESTD_WRITE_TOKEN_FILE',
    placeholder: 'FILE',
    help: 'File of write tokens, one a line (blank lines and # comments skipped); adds to --write-token.',
  },
  rateLimit: {
    kind: 'rate',
    flag: 'rate-limit',
    env: 'DIGESTD_RATE_LIMIT',
    placeholder: 'N/s',
    help: 'Requests allowed per client address, e.g. 100/s, 600/min, 10000/h; over it answers 429.',
  },
  maxEventLoopDelayMs: {
    kind: 'integer',
    flag: 'max-event-loop-delay-ms',
    env: 'DIGESTD_MAX_EVENT_LOOP_DELAY_MS',
    default: 1000,
    min: 0,
    max: 3_600_000,
    help: 'Answer 503 while the mean event-loop delay is over this many ms (0 turns the check off).',
  },
  maxHeapUsedBytes: {
    kind: 'bytes',
    flag: 'max-heap-used',
    env: 'DIGESTD_MAX_HEAP_USED',
    default: 0,
    min: 0,
    help: 'Answer 503 while the V8 heap in use is over this size (0 turns the check off).',
  },
  maxRssBytes: {
    kind: 'bytes',
    flag: 'max-rss',
    env: 'DIGESTD_MAX_RSS',
    default: 0,
    min: 0,
    help: 'Answer 503 while the resident set size is over this size (0 turns the check off).',
  },
  // Supervision and logs
  workers: {
    kind: 'integer',
    flag: 'workers',
    env: 'DIGESTD_WORKERS',
    default: availableParallelism(),
    min: 1,
    max: 256,
    help: 'Worker processes sharing the port, supervised and restarted by the primary; defaults to the number of CPUs.',
  },
  shutdownTimeout: {
    kind: 'integer',
    flag: 'shutdown-timeout',
    env: 'DIGESTD_SHUTDOWN_TIMEOUT',
    default: 10,
    min: 0,
    max: 3600,
    placeholder: 'SECONDS',
    help: 'Seconds to finish in-flight requests after SIGTERM or SIGINT before closing connections.',
  },
  logFile: {
    kind: 'string',
    flag: 'log-file',
    env: 'DIGESTD_LOG_FILE',
    placeholder: 'PATH',
    help: 'Write logs to this file, rotated by size, instead of stdout.',
  },
  logMaxSize: {
    kind: 'bytes',
    flag: 'log-max-size',
    env: 'DIGESTD_LOG_MAX_SIZE',
    default: 10 * MiB,
    min: 1024,
    max: 1024 * MiB,
    help: 'Rotate --log-file when it reaches this size (suffixes K, M, G; KiB, MiB, GiB).',
  },
  logMaxFiles: {
    kind: 'integer',
    flag: 'log-max-files',
    env: 'DIGESTD_LOG_MAX_FILES',
    default: 5,
    min: 2,
    max: 1000,
    help: 'Log files kept, the current one included (PATH, PATH.1, ...); the oldest is deleted.',
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
  // Behind a load balancer
  trustProxy: {
    kind: 'list',
    flag: 'trust-proxy',
    env: 'DIGESTD_TRUST_PROXY',
    placeholder: 'ADDRESS',
    help: 'Addresses or CIDRs of proxies whose X-Forwarded-For names the client (for the rate limit and the access log); repeat or comma-separate.',
  },
} as const satisfies Record<string, SettingSpec>;

type Settings = typeof SETTINGS;
/** A request rate such as 100/s: `max` requests per `windowMs` milliseconds. */
export interface Rate {
  max: number;
  windowMs: number;
}

type ValueOf<S extends SettingSpec> = S['kind'] extends 'integer' | 'bytes'
  ? number
  : S['kind'] extends 'boolean'
    ? boolean
    : S['kind'] extends 'level'
      ? LogLevel
      : S['kind'] extends 'list'
        ? readonly string[]
        : S['kind'] extends 'rate'
          ? Rate
          : string;

/** The validated, frozen configuration passed down from the CLI. */
export type Config = Readonly<
  Omit<
    {
      [K in keyof Settings]: 'default' extends keyof Settings[K]
        ? ValueOf<Settings[K]>
        : ValueOf<Settings[K]> | undefined;
    },
    'store'
  > & {
    /** The store URL; `lmdb:<data-dir>` unless given. */
    store: string;
  }
>;

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

function parseValue(
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

/** The settings a subcommand takes, as [name, spec] pairs in schema order. */
function settingsOf(command: Command): [string, SettingSpec][] {
  return (Object.entries(SETTINGS) as [string, SettingSpec][]).filter(([, spec]) =>
    (spec.commands ?? ['serve']).includes(command),
  );
}

function parseArgsOptions(
  command: Command,
): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const [, spec] of settingsOf(command)) {
    if (spec.kind === 'list') {
      options[spec.flag] = { type: 'string', multiple: true };
    } else if (spec.kind === 'boolean') {
      options[spec.flag] = { type: 'boolean' };
      options[`no-${spec.flag}`] = { type: 'boolean' };
    } else {
      options[spec.flag] = { type: 'string' };
    }
  }
  return options;
}

/**
 * Builds the configuration of a subcommand from the environment and command-line flags.
 * Throws InvalidConfig listing every bad setting by flag and environment variable.
 * Settings of other subcommands keep their defaults.
 */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  command: Command = 'serve',
): Config {
  const problems: string[] = [];
  let flags: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    flags = parseArgs({
      args: [...argv],
      options: parseArgsOptions(command),
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new InvalidConfig([(error as Error).message]);
  }

  const config: Record<string, unknown> = {};
  const taken = new Set(settingsOf(command).map(([name]) => name));
  for (const [name, spec] of Object.entries(SETTINGS) as [string, SettingSpec][]) {
    if (!taken.has(name)) {
      config[name] = spec.default;
      continue;
    }
    let raw: string | boolean | readonly string[] | undefined;
    let source = '';
    const fromEnv = env[spec.env];
    if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      source = spec.env;
    }
    const fromFlag = flags[spec.flag];
    if (fromFlag !== undefined) {
      raw = Array.isArray(fromFlag) ? fromFlag.map(String) : fromFlag;
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
  if (config.acmeDomain !== undefined) {
    if (config.tlsCert !== undefined)
      problems.push('--acme-domain: not with --tls-cert (one source of certificates)');
    if (config.tls === false) problems.push('--acme-domain: needs TLS (not with --no-tls)');
  }
  if (config.acmeChallenge !== 'http-01' && config.acmeChallenge !== 'tls-alpn-01') {
    problems.push('--acme-challenge (DIGESTD_ACME_CHALLENGE): must be http-01 or tls-alpn-01');
  }
  config.store ??= `lmdb:${String(config.dataDir)}`;
  if (command === 'migrate') {
    if (config.from === undefined) problems.push('--from (DIGESTD_MIGRATE_FROM): required');
    if (config.to === undefined) problems.push('--to (DIGESTD_MIGRATE_TO): required');
    if (config.from !== undefined && config.from === config.to) {
      problems.push('--from and --to: name two different stores');
    }
  }
  if (config.metricsPort !== undefined && config.metricsPort !== 0 && config.metricsPort === config.port) {
    problems.push('--metrics-port: must differ from --port');
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
    shown[name] =
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

/** A default as a person reads it: byte sizes in KiB/MiB when they divide evenly. */
function formatDefault(spec: SettingSpec): string {
  const value = spec.default;
  // Defaults read off this machine would mislead in help copied elsewhere.
  if (spec.flag === 'workers') return 'the number of CPUs';
  if (spec.kind === 'bytes' && typeof value === 'number' && value > 0) {
    if (value % MiB === 0) return `${value / MiB}MiB`;
    if (value % 1024 === 0) return `${value / 1024}KiB`;
  }
  return String(value);
}

/** The options part of --help for one subcommand, generated from the schema. */
export function settingsHelp(command: Command = 'serve'): string {
  const rows = settingsOf(command).map(([, spec]) => {
    const flag =
      spec.kind === 'boolean'
        ? `--${spec.flag}, --no-${spec.flag}`
        : `--${spec.flag} ${spec.placeholder ?? spec.kind.toUpperCase()}`;
    const fallback = spec.default === undefined ? '' : ` (default: ${formatDefault(spec)})`;
    return [flag, `${spec.help}${fallback} [env ${spec.env}]`] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help}`).join('\n');
}

/**
 * The write tokens of a configuration: --write-token, then the lines of --write-token-file (blank
 * lines and lines starting with # skipped). Throws InvalidConfig when that file cannot be read or
 * holds no token.
 */
export async function writeTokensOf(config: Config): Promise<string[]> {
  const tokens = [...(config.writeToken ?? [])];
  const path = config.writeTokenFile;
  if (path === undefined) return tokens;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidConfig([`--write-token-file: cannot read ${path}: ${(error as Error).message}`]);
  }
  const fromFile = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (fromFile.length === 0) throw new InvalidConfig([`--write-token-file: ${path} holds no token`]);
  return [...tokens, ...fromFile];
}
