import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import type { Digest } from '../digest.js';
import { InvalidConfig, StoreUnavailable } from '../errors.js';
import { DEFAULT_STORE_TIMEOUT_MS, withDeadline } from './deadline.js';
import type { MessageStore } from './types.js';

/** A Redis Cluster seed node. */
export interface RedisNodeAddress {
  host: string;
  port: number;
}

/** Options of the Redis store (one server) and the Redis Cluster store. */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` of one Redis server. Give this or `clusterNodes`. */
  url?: string;
  /** Seed nodes of a Redis Cluster; the client discovers the rest. Give this or `url`. */
  clusterNodes?: readonly RedisNodeAddress[];
  /** Prefix of every key (letters, digits, `:`, `_`, `-`), followed by the 32 digest bytes. @default "m:" */
  keyPrefix?: string;
  /**
   * Replicas that must confirm each write (Redis `WAIT`) before a put resolves.
   * @default 1 when the server or cluster has replicas when the store becomes ready, else 0
   */
  waitReplicas?: number;
  /** Time any operation may take before it fails with StoreUnavailable. @default 2000 */
  timeoutMs?: number;
}

const KEY_PREFIX = /^[A-Za-z0-9:_-]{0,32}$/;
const SCAN_COUNT = 1000;
/** Most writes sent to one master in one pipeline. */
const PIPELINE_MAX = 500;

interface PendingWrite {
  key: Buffer;
  message: string;
  /** Times this write was sent again after a redirection (MOVED/ASK) during a resharding or failover. */
  redirected: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Messages as Redis strings under `<prefix><32 digest bytes>`, on one server or a Redis Cluster
 * (ioredis routes each key to its slot's master). A put is `SET key message NX`; when replicas are
 * awaited, `WAIT n timeout` follows on the same connection, so the put resolves only after the
 * master applied it and `n` replicas confirmed everything written on that connection so far. Puts
 * made in the same turn of the event loop are grouped per master into one pipeline ending in one
 * WAIT (WAIT blocks its connection, so one per write would serialize them). Reads share round
 * trips through ioredis auto-pipelining (one server) or plain socket pipelining (cluster).
 */
export class RedisStore implements MessageStore {
  readonly kind: 'redis' | 'redis-cluster';
  readonly #client: Redis | Cluster;
  readonly #prefix: Buffer;
  readonly #timeoutMs: number;
  #waitReplicas: number | undefined;
  #connecting: Promise<void> | undefined;
  #pending: PendingWrite[] = [];
  #flushScheduled = false;

  constructor(options: RedisStoreOptions) {
    const prefix = options.keyPrefix ?? 'm:';
    if (!KEY_PREFIX.test(prefix)) {
      throw new InvalidConfig([
        `--store: key prefix "${prefix}" may hold only letters, digits, ":", "_", "-".`,
      ]);
    }
    if ((options.url === undefined) === (options.clusterNodes === undefined)) {
      throw new InvalidConfig(['--store: give either one Redis URL or the seed nodes of a cluster.']);
    }
    this.#prefix = Buffer.from(prefix, 'latin1');
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.#waitReplicas = options.waitReplicas;
    const connection = {
      lazyConnect: true,
      enableAutoPipelining: true,
      connectTimeout: this.#timeoutMs,
      // Longer than WAIT's own timeout below, so WAIT answers rather than being cut off.
      commandTimeout: this.#timeoutMs + 500,
      // Reconnect for ever, at most a second apart: the node recovers by itself.
      retryStrategy: (attempt: number) => Math.min(attempt * 100, 1000),
      maxRetriesPerRequest: 1,
    };
    if (options.url !== undefined) {
      this.kind = 'redis';
      this.#client = new Redis(options.url, connection);
    } else {
      this.kind = 'redis-cluster';
      const { retryStrategy, ...redisOptions } = connection;
      this.#client = new Cluster([...(options.clusterNodes ?? [])], {
        lazyConnect: true,
        // ioredis 5 computes the auto-pipeline slot of a Buffer key from its UTF-8 decoding, which
        // mixes slots for binary keys ("All keys in the pipeline should belong to the same slots
        // allocation group"). Commands are still pipelined on each socket; writes are grouped
        // per master by this store itself.
        enableAutoPipelining: false,
        clusterRetryStrategy: retryStrategy,
        slotsRefreshTimeout: this.#timeoutMs,
        retryDelayOnFailover: 200,
        retryDelayOnClusterDown: 200,
        redisOptions,
      });
    }
    // Connection errors are reported here; without a listener they would crash the process.
    // Operations fail with StoreUnavailable meanwhile, and the client reconnects on its own.
    this.#client.on('error', () => {});
  }

  /** Connects, and settles how many replicas each write waits for. */
  async ready(): Promise<void> {
    await withDeadline(this.#connect(), this.#timeoutMs * 2, this.kind);
    this.#waitReplicas ??= await withDeadline(this.#replicasPresent(), this.#timeoutMs, this.kind);
  }

  #connect(): Promise<void> {
    if (this.#client.status === 'ready') return Promise.resolve();
    this.#connecting ??= (
      this.#client.status === 'wait'
        ? this.#client.connect()
        : new Promise<void>((resolve) => this.#client.once('ready', () => resolve()))
    ).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #replicasPresent(): Promise<number> {
    if (this.#client instanceof Cluster) return this.#client.nodes('slave').length > 0 ? 1 : 0;
    const info = await this.#client.info('replication');
    const replicas = Number(/^connected_slaves:(\d+)/m.exec(info)?.[1] ?? 0);
    return replicas > 0 ? 1 : 0;
  }

  /** Replicas each write waits for (settled by ready()). */
  get waitReplicas(): number | undefined {
    return this.#waitReplicas;
  }

  #key(digest: Digest): Buffer {
    return Buffer.concat([this.#prefix, digest]);
  }

  async put(digest: Digest, message: string): Promise<void> {
    if (this.#waitReplicas === undefined) await this.ready();
    const written = new Promise<void>((resolve, reject) => {
      this.#enqueue({ key: this.#key(digest), message, redirected: 0, resolve, reject });
    });
    await withDeadline(written, this.#timeoutMs, this.kind);
  }

  #enqueue(write: PendingWrite): void {
    this.#pending.push(write);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  /** Sends the writes gathered during this turn of the event loop, one pipeline per master. */
  #flush(): void {
    this.#flushScheduled = false;
    const groups = new Map<string, PendingWrite[]>();
    for (const write of this.#pending) {
      const node = this.#masterOf(write.key);
      const group = groups.get(node);
      if (group === undefined) groups.set(node, [write]);
      else group.push(write);
    }
    this.#pending = [];
    for (const group of groups.values()) {
      for (let start = 0; start < group.length; start += PIPELINE_MAX) {
        const chunk = group.slice(start, start + PIPELINE_MAX);
        this.#write(chunk).catch((error: unknown) => chunk.forEach((write) => write.reject(error)));
      }
    }
  }

  /** The master that serves this key's slot, as far as the client knows (for grouping only). */
  #masterOf(key: Buffer): string {
    if (!(this.#client instanceof Cluster)) return '';
    const slot = calculateSlot(key);
    return this.#client.slots[slot]?.[0] ?? `slot:${slot}`;
  }

  async #write(writes: readonly PendingWrite[]): Promise<void> {
    const replicas = this.#waitReplicas ?? 0;
    const pipeline = this.#client.pipeline();
    for (const { key, message } of writes) pipeline.set(key, message, 'NX');
    if (replicas > 0) pipeline.wait(replicas, Math.max(1, Math.floor(this.#timeoutMs / 2)));
    const results = await pipeline.exec();
    if (results === null) throw new StoreUnavailable(`The ${this.kind} store dropped the write; try again.`);
    let confirmed = replicas;
    if (replicas > 0) {
      const [error, count] = results[writes.length] ?? [];
      confirmed = error ? 0 : Number(count ?? 0);
    }
    let refreshed = false;
    for (const [index, write] of writes.entries()) {
      const [error] = results[index] ?? [new Error('no reply')];
      if (error && /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN) /.test(error.message) && write.redirected < 3) {
        // The slot moved (failover, resharding): learn the new map, then send it again; SET NX
        // makes the repeat harmless. ioredis does not retry writes inside a pipeline itself.
        if (!refreshed && this.#client instanceof Cluster) this.#client.refreshSlotsCache();
        refreshed = true;
        write.redirected += 1;
        setTimeout(() => this.#enqueue(write), 100 * write.redirected);
      } else if (error) write.reject(withCause(this.kind, error));
      else if (confirmed < replicas) {
        write.reject(
          new StoreUnavailable(
            `The ${this.kind} store confirmed the write on ${confirmed} of ${replicas} replicas; try again shortly.`,
          ),
        );
      } else write.resolve();
    }
  }

  async putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    await Promise.all(entries.map(([digest, message]) => this.put(digest, message)));
  }

  async get(digest: Digest): Promise<string | undefined> {
    const value = await withDeadline(this.#client.get(this.#key(digest)), this.#timeoutMs, this.kind);
    return value ?? undefined;
  }

  async has(digest: Digest): Promise<boolean> {
    return (await withDeadline(this.#client.exists(this.#key(digest)), this.#timeoutMs, this.kind)) === 1;
  }

  /** Every master answers PING (and, for a cluster, the client sees the cluster as ready). */
  async ping(): Promise<void> {
    const check = async () => {
      if (this.#client.status !== 'ready') {
        throw new StoreUnavailable(`The ${this.kind} store is not connected (${this.#client.status}).`);
      }
      await Promise.all(this.#masters().map((node) => node.ping()));
    };
    await withDeadline(check(), this.#timeoutMs, this.kind);
  }

  #masters(): Redis[] {
    return this.#client instanceof Cluster ? this.#client.nodes('master') : [this.#client];
  }

  /** SCANs every master for the prefix and reads each page of keys in one pipeline. */
  async *entries(): AsyncIterable<readonly [Digest, string]> {
    await this.ready();
    const pattern = `${this.#prefix.toString('latin1')}*`;
    for (const node of this.#masters()) {
      let cursor = '0';
      do {
        const [next, keys] = await withDeadline(
          node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT),
          this.#timeoutMs * 5,
          this.kind,
        );
        cursor = next.toString();
        const wanted = keys.filter((key) => key.length === this.#prefix.length + 32);
        if (wanted.length === 0) continue;
        const pipeline = node.pipeline();
        for (const key of wanted) pipeline.get(key);
        const values = (await withDeadline(pipeline.exec(), this.#timeoutMs * 5, this.kind)) ?? [];
        for (const [index, key] of wanted.entries()) {
          const [error, value] = values[index] ?? [];
          if (error) throw withCause(this.kind, error);
          if (typeof value === 'string') yield [key.subarray(this.#prefix.length), value] as const;
        }
      } while (cursor !== '0');
    }
  }

  /** Keys in the database of every master: exact when digestd has the database to itself. */
  async count(): Promise<number> {
    await this.ready();
    const sizes = await withDeadline(
      Promise.all(this.#masters().map((node) => node.dbsize())),
      this.#timeoutMs,
      this.kind,
    );
    return sizes.reduce((sum, size) => sum + size, 0);
  }

  /** Sends the writes not yet sent, then QUIT (which Redis answers after everything before it). */
  async close(): Promise<void> {
    if (this.#flushScheduled) this.#flush();
    try {
      await withDeadline(this.#client.quit(), this.#timeoutMs, this.kind);
    } catch {
      this.#client.disconnect();
    }
  }
}

function withCause(kind: string, error: Error): StoreUnavailable {
  return new StoreUnavailable(`The ${kind} store is unavailable; try again shortly.`, { cause: error });
}

/** Creates a Redis (one server) or Redis Cluster store; it connects on `ready()` or first use. */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}
