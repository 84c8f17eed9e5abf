import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { InvalidConfig } from './errors.js';
import { LOG_LEVELS } from './log/logger.js';
import { parseStoreUrl } from './store/url.js';

/**
 * The one settings schema, grouped by concern. Each setting has a type, a default, a help line
 * and, derived from its group and key, a flag and an environment variable. Each group parses to
 * the options of the module that uses it, so the composition root hands groups down whole and
 * modules declare no defaults of their own. Precedence: defaults < environment < flags. Every
 * bad value is reported at once. Nothing outside this file reads process.env.
 */

/** The subcommands that take settings. */
export type Command = 'serve' | 'migrate' | 'verify' | 'backup' | 'restore';
type Kind = 'string' | 'integer' | 'boolean' | 'bytes' | 'choice' | 'store' | 'list' | 'rate';

interface SettingSpec {
  kind: Kind;
  help: string;
  default?: string | number | boolean;
  /** The default as --help shows it, when the value itself would mislead (read off this machine). */
  defaultHelp?: string;
  /** Inclusive bounds for integer and byte settings. */
  min?: number;
  max?: number;
  /** The values a choice takes. */
  choices?: readonly string[];
  /** Value placeholder in --help. @default the unit the key names (MS, SECONDS, DAYS, BYTES), else the kind */
  placeholder?: string;
  /** Hide the value in logs (passwords, tokens). */
  secret?: boolean;
  /** Subcommands that take this setting. @default ['serve'] */
  commands?: readonly Command[];
  /**
   * The flag, without its dashes, when it is not the derived one: the group's name if it is a
   * prefix, then the key in kebab-case without the unit it ends in (headersTimeoutMs:
   * --headers-timeout). The environment variable is DIGESTD_ and the flag in capitals.
   */
  flag?: string;
}

interface GroupSpec {
  /**
   * Where the group's name starts each setting's names: 'both' (tls.certPath: --tls-cert,
   * DIGESTD_TLS_CERT), 'env' (migrate.from: --from, DIGESTD_MIGRATE_FROM), or 'none'.
   */
  prefix: 'both' | 'env' | 'none';
  settings: Record<string, SettingSpec>;
}

const MiB = 1024 * 1024;
/** Shortest --worker-timeout: workers send a heartbeat every 250 ms (process/protocol.ts). */
const MIN_WORKER_TIMEOUT_MS = 1000;

/**
 * Settings by group, each group in the shape of the options its module takes; --help lists them
 * in this order.
 */
export const SCHEMA = {
  /** Where the public listener binds (http/listen.ts: ListenAddress). */
  listen: {
    prefix: 'none',
    settings: {
      port: {
        kind: 'integer',
        default: 8443,
        min: 0,
        max: 65535,
        help: 'TCP port to listen on (0 picks a free port).',
      },
      host: {
        kind: 'string',
        default: '::',
        help: 'Address to listen on; the default :: serves IPv6 and IPv4 (0.0.0.0 where the machine has no IPv6).',
      },
    },
  },
  data: {
    prefix: 'both',
    settings: {
      dir: {
        kind: 'string',
        default: './data',
        placeholder: 'DIR',
        help: 'Directory for the embedded store and the generated TLS certificate.',
        commands: ['serve', 'verify', 'backup'],
      },
    },
  },
  /** The served certificate (http/tls/material.ts: TlsOptions, with the data directory). */
  tls: {
    prefix: 'both',
    settings: {
      enabled: {
        kind: 'boolean',
        flag: 'tls',
        default: true,
        help: 'Serve HTTPS. --no-tls serves plain HTTP, for use behind a TLS-terminating proxy.',
      },
      certPath: {
        kind: 'string',
        flag: 'tls-cert',
        placeholder: 'FILE',
        help: 'PEM certificate (chain). Without it a local CA in <data-dir>/tls/ signs one (trust its ca.pem).',
      },
      keyPath: {
        kind: 'string',
        flag: 'tls-key',
        placeholder: 'FILE',
        help: 'PEM private key matching --tls-cert.',
      },
      extraNames: {
        kind: 'list',
        flag: 'tls-san',
        placeholder: 'NAME',
        help: 'Another DNS name or IP address for the local certificate besides localhost, 127.0.0.1 and ::1; repeatable.',
      },
    },
  },
  /** ACME (http/tls/acme.ts: AcmeOptions, with the data directory), on when domains are given. */
  acme: {
    prefix: 'both',
    settings: {
      domains: {
        kind: 'list',
        flag: 'acme-domain',
        placeholder: 'NAME',
        help: "Obtain and renew a certificate for this domain from an ACME CA (Let's Encrypt); repeatable.",
      },
      email: {
        kind: 'string',
        placeholder: 'ADDRESS',
        help: 'Contact address of the ACME account (expiry notices).',
      },
      directoryUrl: {
        kind: 'string',
        flag: 'acme-directory',
        default: 'https://acme-v02.api.letsencrypt.org/directory',
        placeholder: 'URL',
        help: "ACME directory URL; Let's Encrypt staging: https://acme-staging-v02.api.letsencrypt.org/directory.",
      },
      caCertFiles: {
        kind: 'list',
        flag: 'acme-ca-cert',
        placeholder: 'FILE',
        help: "PEM file of CAs to trust for the ACME server's own HTTPS (private CAs, tests); repeatable.",
      },
      challenge: {
        kind: 'choice',
        choices: ['http-01', 'tls-alpn-01'],
        default: 'http-01',
        placeholder: 'TYPE',
        help: 'http-01 (answered on --acme-http-port) or tls-alpn-01 (answered on the HTTPS port).',
      },
      httpPort: {
        kind: 'integer',
        default: 80,
        min: 1,
        max: 65535,
        help: 'Plain-HTTP port that answers http-01 challenges and redirects every other request to HTTPS.',
      },
      renewBeforeDays: {
        kind: 'integer',
        default: 30,
        min: 1,
        max: 3650,
        help: 'Renew the ACME certificate this many days before it expires (at most half its lifetime).',
      },
    },
  },
  /** What the routes accept (http/app.ts: HttpOptions). */
  http: {
    prefix: 'none',
    settings: {
      maxMessageBytes: {
        kind: 'bytes',
        flag: 'max-message-bytes',
        default: 1 * MiB,
        min: 1,
        max: 512 * MiB,
        help: 'Largest message accepted, in UTF-8 bytes (suffixes K, M, G; KiB, MiB, GiB). Larger answers 413.',
      },
      batchMax: {
        kind: 'integer',
        default: 1000,
        min: 1,
        max: 1_000_000,
        help: 'Most items in one POST /messages/batch or /messages/lookup (the body limit applies too).',
      },
      trustProxy: {
        kind: 'list',
        placeholder: 'ADDRESS',
        help: 'Addresses or CIDRs of proxies whose X-Forwarded-For names the client (for the rate limit and the access log); repeat or comma-separate.',
      },
    },
  },
  /** The logger's level and the primary's log sink (log/sink.ts: LogSinkOptions). */
  log: {
    prefix: 'both',
    settings: {
      level: {
        kind: 'choice',
        choices: LOG_LEVELS,
        default: 'info',
        placeholder: 'LEVEL',
        help: `Log level: ${LOG_LEVELS.join(', ')}.`,
      },
      file: {
        kind: 'string',
        placeholder: 'PATH',
        help: 'Write logs to this file, rotated by size, instead of stdout.',
      },
      maxSizeBytes: {
        kind: 'bytes',
        default: 10 * MiB,
        min: 1024,
        max: 1024 * MiB,
        help: 'Rotate --log-file when it reaches this size (suffixes K, M, G; KiB, MiB, GiB).',
      },
      maxFiles: {
        kind: 'integer',
        default: 5,
        min: 2,
        max: 1000,
        help: 'Log files kept, the current one included (PATH, PATH.1, ...); the oldest is deleted.',
      },
    },
  },
  /** The two stores of `digestd migrate`; each opened with the store group's limits. */
  migrate: {
    prefix: 'env',
    settings: {
      from: {
        kind: 'store',
        placeholder: 'URL',
        help: 'Store to copy from (a store URL as for --store).',
        commands: ['migrate'],
      },
      to: {
        kind: 'store',
        placeholder: 'URL',
        help: 'Store to copy into (a store URL as for --store).',
        commands: ['migrate'],
      },
    },
  },
  /** The file `digestd backup` writes (backup.ts). */
  backup: {
    prefix: 'env',
    settings: {
      to: {
        kind: 'string',
        placeholder: 'FILE',
        help: 'Backup file to write (gzip when the name ends in .gz); replaced only once the new one is whole.',
        commands: ['backup'],
      },
    },
  },
  /** The backup `digestd restore` reads and the store it writes to. */
  restore: {
    prefix: 'env',
    settings: {
      from: {
        kind: 'string',
        placeholder: 'FILE',
        help: 'Backup file to restore (written by digestd backup).',
        commands: ['restore'],
      },
      to: {
        kind: 'store',
        placeholder: 'URL',
        help: 'Store to restore into (a store URL as for --store).',
        commands: ['restore'],
      },
    },
  },
  /** What `digestd verify` checks instead of a store. */
  verify: {
    prefix: 'env',
    settings: {
      backup: {
        kind: 'string',
        placeholder: 'FILE',
        help: 'Check a backup file instead of a store: every record and the trailer.',
        commands: ['verify'],
      },
    },
  },
  /** The message store (store/open.ts: StoreOptions). */
  store: {
    prefix: 'none',
    settings: {
      url: {
        kind: 'store',
        flag: 'store',
        placeholder: 'URL',
        help: 'Message store: lmdb:<dir> (default: lmdb:<data-dir>), postgres://user@host:port/db, redis://host:port, redis-cluster://host:port,host:port,...',
        commands: ['serve', 'verify', 'backup'],
      },
      timeoutMs: {
        kind: 'integer',
        flag: 'store-timeout',
        default: 2000,
        min: 10,
        max: 600_000,
        help: 'Milliseconds any store operation may take before it fails with STORE_UNAVAILABLE (a request then answers 503).',
        commands: ['serve', 'migrate', 'verify', 'backup', 'restore'],
      },
      diskReserveBytes: {
        kind: 'bytes',
        default: 256 * MiB,
        min: 0,
        max: 1024 * 1024 * MiB,
        help: 'LMDB only: while the filesystem of the store has less free space than this, writes answer 507 without reaching LMDB, and resume by themselves once it has more (0 turns the check off).',
      },
      cacheBytes: {
        kind: 'bytes',
        flag: 'cache-bytes',
        default: 64 * MiB,
        min: 0,
        max: 64 * 1024 * MiB,
        help: 'In-process LRU cache of messages in front of PostgreSQL and Redis, in bytes (0 turns it off).',
      },
      redisWaitReplicas: {
        kind: 'integer',
        min: 0,
        max: 64,
        placeholder: 'N',
        help: 'Redis replicas that must confirm each write (WAIT) before 201; a shard with fewer answers writes 503 (default: 0 until a replica is seen, then 1).',
        commands: ['serve', 'migrate', 'restore'],
      },
    },
  },
  /** A listener of its own for GET /metrics (server.ts: MetricsListenerOptions), when a port is given. */
  metrics: {
    prefix: 'both',
    settings: {
      port: {
        kind: 'integer',
        min: 0,
        max: 65535,
        help: 'Serve GET /metrics on this separate port (plain HTTP) instead of the public one.',
      },
      host: {
        kind: 'string',
        default: '127.0.0.1',
        help: 'Address of the --metrics-port listener.',
      },
    },
  },
  /**
   * Write tokens, the rate limit and load shedding (http/app.ts: ProtectionOptions, once the
   * token file is read and the rate limit has its Redis).
   */
  protection: {
    prefix: 'none',
    settings: {
      writeTokens: {
        kind: 'list',
        flag: 'write-token',
        placeholder: 'TOKEN',
        secret: true,
        help: 'Require "Authorization: Bearer <token>" on writes; repeat the flag (or comma-separate in the env) for several tokens.',
      },
      writeTokenFile: {
        kind: 'string',
        placeholder: 'FILE',
        help: 'File of write tokens, one a line (blank lines and # comments skipped); adds to --write-token.',
      },
      rateLimit: {
        kind: 'rate',
        placeholder: 'N/s',
        help: 'Requests allowed per client address, e.g. 100/s, 600/min, 10000/h; over it answers 429.',
      },
      maxEventLoopDelayMs: {
        kind: 'integer',
        flag: 'max-event-loop-delay-ms',
        default: 1000,
        min: 0,
        max: 3_600_000,
        placeholder: 'INTEGER',
        help: 'Answer 503 while the mean event-loop delay is over this many ms (0 turns the check off).',
      },
      maxHeapUsedBytes: {
        kind: 'bytes',
        default: 0,
        min: 0,
        help: 'Answer 503 while the V8 heap in use is over this size (0 turns the check off).',
      },
      maxRssBytes: {
        kind: 'bytes',
        default: 0,
        min: 0,
        help: 'Answer 503 while the resident set size is over this size (0 turns the check off).',
      },
    },
  },
  /** The primary's workers and how long they drain (process/supervisor.ts, process/worker.ts). */
  supervisor: {
    prefix: 'none',
    settings: {
      workers: {
        kind: 'integer',
        default: availableParallelism(),
        defaultHelp: 'the number of CPUs',
        min: 1,
        max: 256,
        help: 'Worker processes sharing the port, supervised and restarted by the primary; defaults to the number of CPUs.',
      },
      shutdownTimeoutSeconds: {
        kind: 'integer',
        default: 10,
        min: 0,
        max: 3600,
        help: 'Seconds to finish in-flight requests after SIGTERM or SIGINT before closing connections.',
      },
      workerTimeoutMs: {
        kind: 'integer',
        default: 10_000,
        min: 0,
        max: 3_600_000,
        help: "Milliseconds a worker's event loop may go without answering the primary (stopped, or stuck in a loop) before the worker is killed and replaced (0 turns the watchdog off).",
      },
    },
  },
  /** Limits on each client connection (http/connection.ts: ConnectionOptions). */
  connection: {
    prefix: 'none',
    settings: {
      headersTimeoutMs: {
        kind: 'integer',
        default: 10_000,
        min: 1,
        max: 3_600_000,
        help: 'Milliseconds a client has for the TLS handshake, and again for sending the request line and headers; slower ones get 408 and are cut off.',
      },
      requestTimeoutMs: {
        kind: 'integer',
        default: 60_000,
        min: 1,
        max: 3_600_000,
        help: 'Milliseconds a client has for sending a whole request, body included (at least --headers-timeout); slower ones get 408 and are cut off.',
      },
      keepAliveTimeoutMs: {
        kind: 'integer',
        default: 72_000,
        min: 1,
        max: 3_600_000,
        help: 'Milliseconds an idle keep-alive connection stays open (longer than a load balancer idle timeout of 60 s).',
      },
      maxHeaderBytes: {
        kind: 'bytes',
        flag: 'max-header-bytes',
        default: 16 * 1024,
        min: 1024,
        max: 1 * MiB,
        help: 'Largest request line plus headers, in bytes. Larger answers 431.',
      },
      maxUrlBytes: {
        kind: 'bytes',
        flag: 'max-url-bytes',
        default: 8 * 1024,
        min: 128,
        max: 1 * MiB,
        help: 'Longest request URL, in bytes. Longer answers 414 (431 beyond --max-header-bytes).',
      },
      maxConnections: {
        kind: 'integer',
        default: 10_000,
        min: 0,
        max: 1_000_000,
        help: 'Most open connections per serving process; more are closed on accept (0: no limit).',
      },
    },
  },
} as const satisfies Record<string, GroupSpec>;

type Schema = typeof SCHEMA;
type GroupName = keyof Schema;

/** A request rate such as 100/s: `max` requests per `windowMs` milliseconds. */
export interface Rate {
  max: number;
  windowMs: number;
}

type ValueOf<S extends SettingSpec> = S extends { kind: 'integer' | 'bytes' }
  ? number
  : S extends { kind: 'boolean' }
    ? boolean
    : S extends { kind: 'choice'; choices: readonly (infer Choice)[] }
      ? Choice
      : S extends { kind: 'list' }
        ? readonly string[]
        : S extends { kind: 'rate' }
          ? Rate
          : string;

/** A group's values: a setting without a default is undefined unless given. */
type GroupValues<Settings extends Record<string, SettingSpec>> = {
  readonly [Key in keyof Settings]: Settings[Key] extends { default: unknown }
    ? ValueOf<Settings[Key]>
    : ValueOf<Settings[Key]> | undefined;
};

type Parsed = { readonly [Group in GroupName]: GroupValues<Schema[Group]['settings']> };

/** The validated, frozen configuration passed down from the CLI: one object per group. */
export type Config = Omit<Parsed, 'store'> & {
  readonly store: Omit<Parsed['store'], 'url'> & {
    /** The store URL; `lmdb:<data-dir>` unless given. */
    readonly url: string;
  };
};

/** One setting with the names derived for it. */
interface Setting {
  group: GroupName;
  key: string;
  spec: SettingSpec;
  /** The flag without its dashes. */
  flag: string;
  env: string;
}

/** A unit a key may end in, and the placeholder --help shows for it; the flag leaves it out. */
const KEY_UNITS = [
  ['Ms', 'MS'],
  ['Seconds', 'SECONDS'],
  ['Days', 'DAYS'],
  ['Bytes', 'BYTES'],
] as const;

const kebab = (camel: string) => camel.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
const unitOf = (key: string) => KEY_UNITS.find(([suffix]) => key.endsWith(suffix));

/** Every setting in schema order, with its flag and environment variable. */
const SETTINGS: readonly Setting[] = Object.entries(SCHEMA).flatMap(([group, { prefix, settings }]) =>
  Object.entries(settings as Record<string, SettingSpec>).map(([key, spec]) => {
    const unit = unitOf(key);
    const stem = kebab(unit === undefined ? key : key.slice(0, -unit[0].length));
    const flag = spec.flag ?? (prefix === 'both' ? `${group}-${stem}` : stem);
    const envWords = prefix === 'env' ? `${group}-${flag}` : flag;
    return {
      group: group as GroupName,
      key,
      spec,
      flag,
      env: `DIGESTD_${envWords.replaceAll('-', '_').toUpperCase()}`,
    };
  }),
);

/** One setting by group and key, for messages that name it. */
function settingOf<Group extends GroupName>(
  group: Group,
  key: keyof Schema[Group]['settings'] & string,
): Setting {
  const setting = SETTINGS.find((candidate) => candidate.group === group && candidate.key === key);
  if (setting === undefined) throw new Error(`no setting ${group}.${key}`);
  return setting;
}

/** A setting's flag, for messages: `--tls-cert`. */
function flagOf<Group extends GroupName>(
  group: Group,
  key: keyof Schema[Group]['settings'] & string,
): string {
  return `--${settingOf(group, key).flag}`;
}

/** A setting's flag and environment variable, for messages: `--from (DIGESTD_MIGRATE_FROM)`. */
function namesOf<Group extends GroupName>(
  group: Group,
  key: keyof Schema[Group]['settings'] & string,
): string {
  return `${flagOf(group, key)} (${settingOf(group, key).env})`;
}

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

/** The settings a subcommand takes, in schema order. */
function settingsOf(command: Command): Setting[] {
  return SETTINGS.filter(({ spec }) => (spec.commands ?? ['serve']).includes(command));
}

function parseArgsOptions(
  command: Command,
): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const { spec, flag } of settingsOf(command)) {
    if (spec.kind === 'list') {
      options[flag] = { type: 'string', multiple: true };
    } else if (spec.kind === 'boolean') {
      options[flag] = { type: 'boolean' };
      options[`no-${flag}`] = { type: 'boolean' };
    } else {
      options[flag] = { type: 'string' };
    }
  }
  return options;
}

/**
 * Freezes a configuration and each of its groups: what the CLI loads, and what a worker receives
 * (a copy, over IPC).
 */
export function freezeConfig(config: Config): Config {
  for (const group of Object.values(config)) Object.freeze(group);
  return Object.freeze(config);
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

  const groups: Record<string, Record<string, unknown>> = {};
  const taken = new Set(settingsOf(command));
  for (const setting of SETTINGS) {
    const { group, key, spec, flag } = setting;
    const values = (groups[group] ??= {});
    values[key] = spec.default;
    if (!taken.has(setting)) continue;
    let raw: string | boolean | readonly string[] | undefined;
    let source = '';
    const fromEnv = env[setting.env];
    if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      source = setting.env;
    }
    const fromFlag = flags[flag];
    if (fromFlag !== undefined) {
      raw = Array.isArray(fromFlag) ? fromFlag.map(String) : fromFlag;
      source = `--${flag}`;
    }
    if (spec.kind === 'boolean' && flags[`no-${flag}`] === true) {
      raw = false;
      source = `--no-${flag}`;
    }
    if (raw === undefined) continue;
    const { value, problem } = parseValue(spec, raw);
    if (problem !== undefined) problems.push(`${source}: ${problem}`);
    else values[key] = value;
  }
  groups.store!.url ??= `lmdb:${String(groups.data!.dir)}`;
  const config = groups as unknown as Config;

  if ((config.tls.certPath === undefined) !== (config.tls.keyPath === undefined)) {
    problems.push(`${flagOf('tls', 'certPath')} and ${flagOf('tls', 'keyPath')}: give both or neither`);
  }
  if (config.acme.domains !== undefined) {
    const domains = flagOf('acme', 'domains');
    if (config.tls.certPath !== undefined) {
      problems.push(`${domains}: not with ${flagOf('tls', 'certPath')} (one source of certificates)`);
    }
    if (!config.tls.enabled) {
      problems.push(`${domains}: needs TLS (not with --no-${settingOf('tls', 'enabled').flag})`);
    }
  }
  if (command === 'migrate') {
    const { from, to } = config.migrate;
    if (from === undefined) problems.push(`${namesOf('migrate', 'from')}: required`);
    if (to === undefined) problems.push(`${namesOf('migrate', 'to')}: required`);
    if (from !== undefined && from === to) {
      problems.push(`${flagOf('migrate', 'from')} and ${flagOf('migrate', 'to')}: name two different stores`);
    }
  }
  if (command === 'backup' && config.backup.to === undefined) {
    problems.push(`${namesOf('backup', 'to')}: required`);
  }
  if (command === 'restore') {
    if (config.restore.from === undefined) problems.push(`${namesOf('restore', 'from')}: required`);
    if (config.restore.to === undefined) problems.push(`${namesOf('restore', 'to')}: required`);
  }
  const metricsPort = config.metrics.port;
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === config.listen.port) {
    problems.push(`${flagOf('metrics', 'port')}: must differ from ${flagOf('listen', 'port')}`);
  }
  if (config.connection.headersTimeoutMs > config.connection.requestTimeoutMs) {
    problems.push(
      `${flagOf('connection', 'headersTimeoutMs')} must not be longer than ${flagOf('connection', 'requestTimeoutMs')}`,
    );
  }
  const workerTimeoutMs = config.supervisor.workerTimeoutMs;
  if (workerTimeoutMs > 0 && workerTimeoutMs < MIN_WORKER_TIMEOUT_MS) {
    problems.push(
      `${flagOf('supervisor', 'workerTimeoutMs')}: 0 (off) or at least ${MIN_WORKER_TIMEOUT_MS} ms (a few heartbeats)`,
    );
  }
  if (problems.length > 0) throw new InvalidConfig(problems);
  return freezeConfig(config);
}

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

/**
 * The write tokens of the protection settings: --write-token, then the lines of
 * --write-token-file (blank lines and lines starting with # skipped). Throws InvalidConfig when
 * that file cannot be read or holds no token.
 */
export async function writeTokensOf(
  protection: Pick<Config['protection'], 'writeTokens' | 'writeTokenFile'>,
): Promise<string[]> {
  const tokens = [...(protection.writeTokens ?? [])];
  const path = protection.writeTokenFile;
  if (path === undefined) return tokens;
  const flag = flagOf('protection', 'writeTokenFile');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidConfig([`${flag}: cannot read ${path}: ${(error as Error).message}`]);
  }
  const fromFile = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (fromFile.length === 0) throw new InvalidConfig([`${flag}: ${path} holds no token`]);
  return [...tokens, ...fromFile];
}
