import { availableParallelism } from 'node:os';
import { LOG_LEVELS } from '../log/logger.js';

/**
 * The one settings schema, grouped by concern (loading: load.ts; names: names.ts; --help:
 * help.ts). Each setting has a type, a default, a help line and, derived from its group and key, a flag and an environment variable. Each group parses to
 * the options of the module that uses it, so the composition root hands groups down whole and
 * modules declare no defaults of their own. Precedence: defaults < environment < flags. Every
 * bad value is reported at once. Nothing outside src/config/ reads process.env.
 */

/** The subcommands that take settings. */
export type Command = 'serve' | 'migrate' | 'verify' | 'backup' | 'restore' | 'remove';
export type Kind = 'string' | 'integer' | 'boolean' | 'bytes' | 'choice' | 'store' | 'list' | 'rate';

export interface SettingSpec {
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
  /**
   * A flag, without its dashes, this setting had before its name followed the rule above: still
   * accepted (and its environment variable), never shown in --help; the current name wins.
   */
  formerFlag?: string;
}

export interface GroupSpec {
  /**
   * Where the group's name starts each setting's names: 'both' (tls.certPath: --tls-cert,
   * DIGESTD_TLS_CERT), 'env' (migrate.from: --from, DIGESTD_MIGRATE_FROM), or 'none'.
   */
  prefix: 'both' | 'env' | 'none';
  settings: Record<string, SettingSpec>;
}

export const MiB = 1024 * 1024;
/** Shortest --worker-timeout: workers send a heartbeat every 250 ms (process/protocol.ts). */
export const MIN_WORKER_TIMEOUT_MS = 1000;

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
        commands: ['serve', 'verify', 'backup', 'remove'],
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
        flag: 'max-message-size',
        formerFlag: 'max-message-bytes',
        default: 1 * MiB,
        min: 1,
        max: 512 * MiB,
        help: 'Largest message accepted, in UTF-8 bytes (suffixes K, M, G; KiB, MiB, GiB). Larger answers 413.',
      },
      maxAnswerBytes: {
        kind: 'bytes',
        flag: 'max-answer-size',
        formerFlag: 'max-answer-bytes',
        default: 16 * MiB,
        min: 1,
        max: 512 * MiB,
        help: 'Most bytes of messages one POST /messages/lookup answers (suffixes K, M, G; KiB, MiB, GiB). More answers 413.',
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
      format: {
        kind: 'choice',
        choices: ['auto', 'json', 'pretty'],
        default: 'auto',
        placeholder: 'FORMAT',
        help: 'Log lines on stdout: json (one object a line), pretty (for a person), or auto: pretty when stdout is a terminal, else json. --log-file is always json.',
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
  /** Where `digestd remove` reads digests besides its arguments. */
  remove: {
    prefix: 'env',
    settings: {
      from: {
        kind: 'string',
        placeholder: 'FILE',
        help: 'File of digests to remove, one (64 hex digits) a line; blank lines and # comments skipped.',
        commands: ['remove'],
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
        commands: ['serve', 'verify', 'backup', 'remove'],
      },
      waitSeconds: {
        kind: 'integer',
        flag: 'store-wait',
        default: 30,
        min: 0,
        max: 3600,
        help: 'Seconds to wait at start for a store that cannot be reached yet (connection refused, a timeout), trying again with a line each time; then exit 1. A store that refuses digestd (permission, authentication) exits 2 at once.',
      },
      timeoutMs: {
        kind: 'integer',
        flag: 'store-timeout',
        default: 2000,
        min: 10,
        max: 600_000,
        help: 'Milliseconds any store operation may take before it fails with STORE_UNAVAILABLE (a request then answers 503).',
        commands: ['serve', 'migrate', 'verify', 'backup', 'restore', 'remove'],
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
        flag: 'cache-size',
        formerFlag: 'cache-bytes',
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
        commands: ['serve', 'migrate', 'restore', 'remove'],
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
   * Write and admin tokens, the rate limit and load shedding (http/app.ts: ProtectionOptions, once
   * the token files are read and the rate limit has its Redis).
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
      adminTokens: {
        kind: 'list',
        flag: 'admin-token',
        placeholder: 'TOKEN',
        secret: true,
        help: 'Allow DELETE /messages/<digest> (takedown) with "Authorization: Bearer <token>"; repeatable (comma-separated in the env). Without any, removal over HTTP is off.',
      },
      adminTokenFile: {
        kind: 'string',
        placeholder: 'FILE',
        help: 'File of admin tokens, one a line (blank lines and # comments skipped); adds to --admin-token.',
      },
      rateLimit: {
        kind: 'rate',
        placeholder: 'N/s',
        help: 'Requests allowed per client address, e.g. 100/s, 600/min, 10000/h; over it answers 429.',
      },
      maxEventLoopDelayMs: {
        kind: 'integer',
        formerFlag: 'max-event-loop-delay-ms',
        default: 1000,
        min: 0,
        max: 3_600_000,
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
        flag: 'max-header-size',
        formerFlag: 'max-header-bytes',
        default: 16 * 1024,
        min: 1024,
        max: 1 * MiB,
        help: 'Largest request line plus headers, in bytes. Larger answers 431.',
      },
      maxUrlBytes: {
        kind: 'bytes',
        flag: 'max-url-length',
        formerFlag: 'max-url-bytes',
        default: 8 * 1024,
        min: 128,
        max: 1 * MiB,
        help: 'Longest request URL, in bytes. Longer answers 414 (431 beyond --max-header-size).',
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

export type Schema = typeof SCHEMA;
export type GroupName = keyof Schema;

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
