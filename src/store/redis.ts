import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import { formatDigest, parseDigest, type Digest } from '../digest.js';
import { InvalidConfig, MessageRemoved, StoreUnavailable } from '../errors.js';
import { asStoreUnavailable, withDeadline } from './deadline.js';
import { HeartbeatFeed } from './removal-feed.js';
import { putEach, TurnBatch } from './turn-batch.js';
import {
  MUST_WAIT,
  REMOVED,
  type MessageStore,
  type MustWait,
  type RemovalOutcome,
  type RemovalWatcher,
  type Removed,
  type StoreLogger,
} from './types.js';
import { isKeyPrefix } from './url.js';

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
   * Replicas that must confirm each write (Redis `WAIT`) before a put resolves. A shard (or server)
   * with fewer replicas attached refuses writes at once with StoreUnavailable.
   * @default 0 until the server or cluster is seen with a replica, then 1 for the life of the store
   */
  waitReplicas?: number | undefined;
  /** Time any operation may take before it fails with StoreUnavailable, in ms. */
  timeoutMs: number;
  /** Receives topology changes: replicas per shard, replicas each write waits for. @default none */
  logger?: StoreLogger | undefined;
}

const SCAN_COUNT = 1000;
/** Most writes sent to one master in one pipeline. */
const PIPELINE_MAX = 500;
/** How often a cluster client re-reads CLUSTER SLOTS (masters and their replicas). */
const SLOTS_REFRESH_MS = 1000;
/** Least time between two slot refreshes asked for by writes refused for want of replicas. */
const REFUSED_REFRESH_MS = 250;

/**
 * A put: stores the message (SET NX) unless its digest's removal marker exists, in one script, so
 * that no removal can come between the check and the write. Answers 0 when refused.
 * KEYS: message key, marker key. ARGV: message.
 */
const PUT_SCRIPT = `if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return 1`;

/**
 * A removal: deletes the message, sets its marker (the time of the removal) and tells every node's
 * cache, in one script. Answers {messages deleted, 1 if the marker is new}.
 * KEYS: message key, marker key. ARGV: time, channel, hex digest.
 */
const REMOVE_SCRIPT = `local deleted = redis.call('DEL', KEYS[1])
local listed = redis.call('SET', KEYS[2], ARGV[1], 'NX')
redis.call('PUBLISH', ARGV[2], ARGV[3])
if listed then return {deleted, 1} end
return {deleted, 0}`;

/** How long watchRemovals waits before it subscribes on another cluster node after one was lost. */
const RESUBSCRIBE_DELAY_MS = 250;

/** Between the key prefix and the hash tag of every removal marker. */
const MARKER_INFIX = 'removed:';

/**
 * For each of the 16,384 cluster slots, a short text whose CRC16 falls in that slot: a removal
 * marker carries its message key's slot as this hash tag, so that both keys are on one shard and
 * one script can change them together, whatever bytes (braces included) the digest holds. Found
 * once, by counting up until every slot has one (about 170,000 CRC16s of short strings).
 */
let slotTags: string[] | undefined;
function slotTag(slot: number): string {
  if (slotTags === undefined) {
    const tags = new Array<string>(16384);
    let found = 0;
    for (let candidate = 0; found < 16384; candidate += 1) {
      const text = candidate.toString(36);
      const tagSlot = calculateSlot(text);
      if (tags[tagSlot] === undefined) {
        tags[tagSlot] = text;
        found += 1;
      }
    }
    slotTags = tags;
  }
  return slotTags[slot]!;
}

/** The commands this store defines on its writer (ioredis defineCommand: EVALSHA, EVAL once). */
interface ScriptedClient {
  digestdPut(messageKey: Buffer, markerKey: Buffer, message: string): Promise<number>;
  digestdRemove(
    messageKey: Buffer,
    markerKey: Buffer,
    time: string,
    channel: string,
    hex: string,
  ): Promise<[number, number]>;
}

interface PendingWrite {
  key: Buffer;
  marker: Buffer;
  message: string;
  /** Times this write was sent again after a redirection (MOVED/ASK) during a resharding or failover. */
  redirected: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Messages as Redis strings under `<prefix><32 digest bytes>`, on one server or a Redis Cluster
 * (ioredis routes each key to its slot's master). A removed digest has a marker key,
 * `<prefix>removed:{<tag>}<32 digest bytes>`, whose hash tag puts it in its message key's slot;
 * removals publish the digest on `<prefix>removed` for the other nodes' caches.
 * A put is a script that refuses a digest with a marker and otherwise does `SET key message NX`; when replicas are
 * awaited, `WAIT n timeout` follows on the same connection, so the put resolves only after the
 * master applied it and `n` replicas confirmed everything written on that connection so far. Puts
 * made in the same turn of the event loop are grouped per master into one pipeline ending in one
 * WAIT (WAIT blocks its connection, so one per write would serialize them).
 *
 * Writes and their WAIT go over a client of their own, so a WAIT that blocks never holds up a read:
 * reads, pings and scans use the other client (auto-pipelining on one server, plain socket
 * pipelining on a cluster). In a cluster, the replicas of each shard are taken from CLUSTER SLOTS,
 * re-read every second and after every failover or redirection; a write to a shard with fewer
 * replicas than it must wait for is refused at once instead of blocking in WAIT, and every change
 * of a shard's replica count is logged.
 */
export class RedisStore implements MessageStore {
  readonly kind: 'redis' | 'redis-cluster';
  /** Reads, pings, scans: never behind a WAIT. */
  readonly #reader: Redis | Cluster;
  /** SET NX + WAIT pipelines. */
  readonly #writer: Redis | Cluster;
  readonly #prefix: Buffer;
  /** `<prefix>removed:`, which every marker key starts with. */
  readonly #markerPrefix: Buffer;
  /** Where removals are published: `<prefix>removed`. */
  readonly #channel: string;
  /** A connection of its own to one server (for a cluster, one node) for watchRemovals. */
  readonly #createSubscriber: () => Redis;
  readonly #timeoutMs: number;
  readonly #logger: StoreLogger | undefined;
  /** --redis-wait-replicas when given; undefined follows the topology (0, then 1 once replicas are seen). */
  readonly #configuredWait: number | undefined;
  #waitReplicas = 0;
  #ready: Promise<void> | undefined;
  /** Replicas attached to each master, as last logged. */
  #shardReplicas = new Map<string, number>();
  #lastRefusedRefresh = 0;
  readonly #writes = new TurnBatch<PendingWrite>((writes) => this.#send(writes));

  constructor(options: RedisStoreOptions) {
    const prefix = options.keyPrefix ?? 'm:';
    if (!isKeyPrefix(prefix)) {
      throw new InvalidConfig([`key prefix "${prefix}" may hold only letters, digits, ":", "_", "-".`]);
    }
    if ((options.url === undefined) === (options.clusterNodes === undefined)) {
      throw new InvalidConfig(['give either one Redis URL or the seed nodes of a cluster.']);
    }
    this.#prefix = Buffer.from(prefix, 'latin1');
    this.#markerPrefix = Buffer.from(`${prefix}${MARKER_INFIX}`, 'latin1');
    this.#channel = `${prefix}removed`;
    this.#timeoutMs = options.timeoutMs;
    this.#logger = options.logger;
    this.#configuredWait = options.waitReplicas;
    this.#waitReplicas = options.waitReplicas ?? 0;
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
    const client = (): Redis | Cluster => {
      if (options.url !== undefined) return new Redis(options.url, connection);
      const { retryStrategy, ...redisOptions } = connection;
      return new Cluster([...(options.clusterNodes ?? [])], {
        lazyConnect: true,
        // ioredis 5 computes the auto-pipeline slot of a Buffer key from its UTF-8 decoding, which
        // mixes slots for binary keys ("All keys in the pipeline should belong to the same slots
        // allocation group"). Commands are still pipelined on each socket; writes are grouped
        // per master by this store itself.
        enableAutoPipelining: false,
        clusterRetryStrategy: retryStrategy,
        slotsRefreshTimeout: this.#timeoutMs,
        // A promoted master and a replica attached again are learned within this.
        slotsRefreshInterval: SLOTS_REFRESH_MS,
        retryDelayOnFailover: 200,
        retryDelayOnClusterDown: 200,
        redisOptions,
      });
    };
    this.kind = options.url !== undefined ? 'redis' : 'redis-cluster';
    this.#createSubscriber = () => {
      if (options.url !== undefined) return new Redis(options.url, connection);
      const known = this.#reader instanceof Cluster ? this.#reader.nodes('all') : [];
      const nodes =
        known.length > 0
          ? known.map(({ options: node }) => ({ host: node.host ?? '127.0.0.1', port: node.port ?? 6379 }))
          : [...(options.clusterNodes ?? [])];
      const node = nodes[Math.floor(Math.random() * nodes.length)]!;
      // Never connected again: its end makes watchRemovals open the next one on a node picked anew.
      return new Redis({ ...connection, host: node.host, port: node.port, retryStrategy: () => null });
    };
    this.#reader = client();
    this.#writer = client();
    this.#writer.defineCommand('digestdPut', { numberOfKeys: 2, lua: PUT_SCRIPT });
    this.#writer.defineCommand('digestdRemove', { numberOfKeys: 2, lua: REMOVE_SCRIPT });
    for (const each of [this.#reader, this.#writer]) {
      // Connection errors are reported here; without a listener they would crash the process.
      // Operations fail with StoreUnavailable meanwhile, and the client reconnects on its own.
      each.on('error', () => {});
    }
    if (this.#writer instanceof Cluster) this.#writer.on('refresh', () => this.#followTopology());
  }

  /** Connects both clients and reads how many replicas each write waits for. */
  ready(): Promise<void> {
    this.#ready ??= this.#connectAndSettle().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async #connectAndSettle(): Promise<void> {
    await withDeadline(
      Promise.all([connect(this.#reader), connect(this.#writer)]),
      this.#timeoutMs * 2,
      this.kind,
    );
    if (this.#writer instanceof Cluster) this.#followTopology();
    else {
      const info = await withDeadline(this.#writer.info('replication'), this.#timeoutMs, this.kind);
      this.#observeReplicas('', Number(/^connected_slaves:(\d+)/m.exec(info)?.[1] ?? 0));
    }
  }

  /** Reads the replicas of every shard from the writer's slot map (CLUSTER SLOTS). */
  #followTopology(): void {
    if (!(this.#writer instanceof Cluster)) return;
    const replicas = new Map<string, number>();
    for (const nodes of this.#writer.slots) {
      const [master] = nodes ?? [];
      if (master !== undefined && !replicas.has(master)) replicas.set(master, nodes.length - 1);
    }
    for (const master of this.#shardReplicas.keys()) {
      if (!replicas.has(master)) this.#shardReplicas.delete(master);
    }
    for (const [master, count] of replicas) this.#observeReplicas(master, count);
  }

  /**
   * Records the replicas attached to one shard (`''` for a single server), logs any change, and
   * raises the default wait to 1 the first time a replica is seen (never lowers it again: a
   * failover leaves the promoted master without a replica for a while, which is no reason to
   * acknowledge writes that one crash can lose).
   */
  #observeReplicas(master: string, replicas: number): void {
    if (this.#configuredWait === undefined && replicas > 0 && this.#waitReplicas === 0) {
      this.#waitReplicas = 1;
      this.#logger?.info(
        { store: this.kind, waitReplicas: 1 },
        `the ${this.kind} store has replicas: each write now waits for 1 replica to confirm it`,
      );
    }
    const before = this.#shardReplicas.get(master);
    this.#shardReplicas.set(master, replicas);
    if (before === replicas) return;
    const fields = {
      store: this.kind,
      ...(master && { shard: master }),
      replicas,
      waitReplicas: this.#waitReplicas,
    };
    const where = master ? `shard ${master}` : 'server';
    if (replicas < this.#waitReplicas) {
      this.#logger?.warn(
        fields,
        `the ${this.kind} ${where} has ${replicas} of the ${this.#waitReplicas} replicas each write waits for: writes to it answer 503 until one is attached`,
      );
    } else {
      this.#logger?.info(
        fields,
        `the ${this.kind} ${where} has ${replicas} replica${replicas === 1 ? '' : 's'}`,
      );
    }
  }

  /** Replicas each write waits for now (settled by ready(), then following the topology). */
  get waitReplicas(): number {
    return this.#waitReplicas;
  }

  #key(digest: Digest): Buffer {
    return Buffer.concat([this.#prefix, digest]);
  }

  /** The removal marker of a digest: in the slot of its message key (`key`). */
  #marker(digest: Digest, key: Buffer): Buffer {
    const tag = slotTag(calculateSlot(key));
    return Buffer.concat([this.#markerPrefix, Buffer.from(`{${tag}}`, 'latin1'), digest]);
  }

  async put(digest: Digest, message: string): Promise<void> {
    await this.ready();
    const key = this.#key(digest);
    const written = new Promise<void>((resolve, reject) => {
      this.#writes.push({ key, marker: this.#marker(digest, key), message, redirected: 0, resolve, reject });
    });
    await withDeadline(written, this.#timeoutMs, this.kind);
  }

  /** Sends the writes gathered during one turn of the event loop, one pipeline per master. */
  #send(pending: readonly PendingWrite[]): void {
    const groups = new Map<string, { replicas: number | undefined; writes: PendingWrite[] }>();
    for (const write of pending) {
      const { master, replicas } = this.#shardOf(write.key);
      const group = groups.get(master);
      if (group === undefined) groups.set(master, { replicas, writes: [write] });
      else group.writes.push(write);
    }
    const required = this.#waitReplicas;
    for (const [master, { replicas, writes }] of groups) {
      if (replicas !== undefined && replicas < required) {
        this.#refuse(master, replicas, required, writes);
        continue;
      }
      for (let start = 0; start < writes.length; start += PIPELINE_MAX) {
        const chunk = writes.slice(start, start + PIPELINE_MAX);
        this.#write(chunk, required).catch((error: unknown) => chunk.forEach((write) => write.reject(error)));
      }
    }
  }

  /**
   * Writes to a shard without the replicas they must wait for fail at once (WAIT would only block
   * for its timeout), and the slot map is read again soon, so an attached replica is noticed.
   */
  #refuse(master: string, replicas: number, required: number, writes: readonly PendingWrite[]): void {
    const error = new StoreUnavailable(
      `The ${this.kind} shard of this message (master ${master}) has ${replicas} replica${replicas === 1 ? '' : 's'} ` +
        `attached and each write waits for ${required} (--redis-wait-replicas); try again shortly.`,
      { reason: 'too_few_replicas' },
    );
    for (const write of writes) write.reject(error);
    const now = Date.now();
    if (this.#writer instanceof Cluster && now - this.#lastRefusedRefresh >= REFUSED_REFRESH_MS) {
      this.#lastRefusedRefresh = now;
      this.#writer.refreshSlotsCache();
    }
  }

  /**
   * The master that serves this key's slot and its replicas, as far as the writer knows. A single
   * server is one shard whose replicas WAIT itself counts (replicas undefined).
   */
  #shardOf(key: Buffer): { master: string; replicas: number | undefined } {
    if (!(this.#writer instanceof Cluster)) return { master: '', replicas: undefined };
    const slot = calculateSlot(key);
    const nodes = this.#writer.slots[slot];
    if (nodes === undefined || nodes.length === 0) return { master: `slot:${slot}`, replicas: undefined };
    return { master: nodes[0]!, replicas: nodes.length - 1 };
  }

  async #write(writes: readonly PendingWrite[], replicas: number): Promise<void> {
    const pipeline = this.#writer.pipeline() as unknown as ReturnType<Redis['pipeline']> & ScriptedClient;
    for (const { key, marker, message } of writes) void pipeline.digestdPut(key, marker, message);
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
      const [error, stored] = results[index] ?? [new Error('no reply')];
      if (error && /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN) /.test(error.message) && write.redirected < 3) {
        // The slot moved (failover, resharding): learn the new map, then send it again; SET NX
        // makes the repeat harmless. ioredis does not retry writes inside a pipeline itself.
        if (!refreshed && this.#writer instanceof Cluster) this.#writer.refreshSlotsCache();
        refreshed = true;
        write.redirected += 1;
        setTimeout(() => this.#writes.push(write), 100 * write.redirected);
      } else if (error) write.reject(asStoreUnavailable(error, this.kind));
      else if (stored === 0) write.reject(new MessageRemoved());
      else if (confirmed < replicas) {
        write.reject(
          new StoreUnavailable(
            `The ${this.kind} store confirmed the write on ${confirmed} of ${replicas} replicas; try again shortly.`,
            { reason: 'too_few_replicas' },
          ),
        );
      } else write.resolve();
    }
  }

  putMany(entries: readonly (readonly [Digest, string])[]): Promise<void> {
    return putEach(this, entries);
  }

  /** GET; on a miss only, whether the digest's removal marker exists. */
  async get(digest: Digest): Promise<string | undefined | Removed> {
    const key = this.#key(digest);
    const value = await withDeadline(this.#reader.get(key), this.#timeoutMs, this.kind);
    if (value !== null) return value;
    const removed = await withDeadline(
      this.#reader.exists(this.#marker(digest, key)),
      this.#timeoutMs,
      this.kind,
    );
    return removed === 1 ? REMOVED : undefined;
  }

  /**
   * One script on the digest's shard deletes the message, sets its marker and publishes the
   * removal; when replicas are awaited, WAIT follows it as it follows puts.
   */
  async remove(digest: Digest): Promise<RemovalOutcome> {
    await this.ready();
    const key = this.#key(digest);
    const { replicas } = this.#shardOf(key);
    const required = this.#waitReplicas;
    if (replicas !== undefined && replicas < required) {
      throw new StoreUnavailable(
        `The ${this.kind} shard of this digest has ${replicas} replicas attached and each write waits for ${required}; try again shortly.`,
        { reason: 'too_few_replicas' },
      );
    }
    const pipeline = this.#writer.pipeline() as unknown as ReturnType<Redis['pipeline']> & ScriptedClient;
    void pipeline.digestdRemove(
      key,
      this.#marker(digest, key),
      new Date().toISOString(),
      this.#channel,
      formatDigest(digest),
    );
    if (required > 0) pipeline.wait(required, Math.max(1, Math.floor(this.#timeoutMs / 2)));
    const results = await withDeadline(pipeline.exec(), this.#timeoutMs, this.kind);
    const [error, reply] = results?.[0] ?? [new Error('no reply')];
    if (error) throw asStoreUnavailable(error, this.kind);
    if (required > 0) {
      const [waitError, confirmed] = results?.[1] ?? [];
      if (waitError || Number(confirmed ?? 0) < required) {
        throw new StoreUnavailable(
          `The ${this.kind} store applied the removal but confirmed it on fewer than ${required} replicas; remove it again.`,
          { reason: 'too_few_replicas' },
        );
      }
    }
    const [deleted, listed] = reply as [number, number];
    if (listed === 0) return 'already_removed';
    return deleted > 0 ? 'removed' : 'not_stored';
  }

  /** SCANs every master for removal markers. */
  async *removedDigests(): AsyncIterable<Digest> {
    await this.ready();
    for await (const [, keys] of this.#scan(this.#markerPrefix)) {
      for (const key of keys) {
        const close = key.indexOf(0x7d, this.#markerPrefix.length);
        if (close !== -1 && key.length - close - 1 === 32) yield Buffer.from(key.subarray(close + 1));
      }
    }
  }

  /**
   * SUBSCRIBEs on a connection of its own to one server (in a cluster, to one node: PUBLISH reaches
   * every node) and checks the channel with heartbeats PUBLISHed through the reader. Each drop of
   * that connection is reported at once, so that a removal published while it was down is never
   * taken as heard; ioredis's own cluster subscriber is not used because it moves to another node
   * and subscribes again without telling, and later heartbeats would then vouch for the gap. A
   * cluster node's connection is not made again: the next one goes to a node picked anew.
   */
  watchRemovals(watcher: RemovalWatcher): { close(): Promise<void> } {
    let closed = false;
    let subscriber: Redis | undefined;
    let retry: NodeJS.Timeout | undefined;
    const feed = new HeartbeatFeed({
      watcher,
      publish: async (text) => {
        await withDeadline(this.#reader.publish(this.#channel, text), this.#timeoutMs, this.kind);
      },
      parseDigest,
      resubscribe: () => subscribe(subscriber),
    });
    const subscribe = (client: Redis | undefined) => {
      if (closed || client === undefined || client !== subscriber) return;
      client.subscribe(this.#channel).then(
        () => {
          if (client === subscriber) feed.subscribed();
        },
        () => {
          if (client === subscriber) feed.disconnected();
        },
      );
    };
    const open = () => {
      if (closed) return;
      const client = this.#createSubscriber();
      subscriber = client;
      client.on('error', () => {});
      client.on('message', (channel: string, text: string) => {
        if (channel === this.#channel && client === subscriber) feed.receive(text);
      });
      // One server's client connects again by itself and SUBSCRIBEs anew on 'ready'; the next
      // heartbeat back makes the feed live again.
      client.on('close', () => {
        if (client === subscriber) feed.disconnected();
      });
      client.on('ready', () => subscribe(client));
      client.on('end', () => {
        if (!closed && client === subscriber) retry = setTimeout(open, RESUBSCRIBE_DELAY_MS);
      });
      client.connect().catch(() => {});
    };
    feed.start();
    open();
    return {
      close: async () => {
        closed = true;
        clearTimeout(retry);
        feed.stop();
        subscriber?.disconnect();
        await Promise.resolve();
      },
    };
  }

  /** Every read waits for the server. */
  getSync(): MustWait {
    return MUST_WAIT;
  }

  async has(digest: Digest): Promise<boolean> {
    return (await withDeadline(this.#reader.exists(this.#key(digest)), this.#timeoutMs, this.kind)) === 1;
  }

  /** Every master answers PING (and, for a cluster, the client sees the cluster as ready). */
  async ping(): Promise<void> {
    const check = async () => {
      for (const client of [this.#reader, this.#writer]) {
        if (client.status !== 'ready') {
          throw new StoreUnavailable(`The ${this.kind} store is not connected (${client.status}).`);
        }
      }
      await Promise.all(this.#masters().map((node) => node.ping()));
    };
    await withDeadline(check(), this.#timeoutMs, this.kind);
  }

  #masters(): Redis[] {
    return this.#reader instanceof Cluster ? this.#reader.nodes('master') : [this.#reader];
  }

  /** SCANs every master for the prefix and reads each page of keys in one pipeline. */
  async *entries(): AsyncIterable<readonly [Digest, string]> {
    await this.ready();
    for await (const [node, keys] of this.#scan(this.#prefix)) {
      // Removal markers share the prefix but are longer.
      const wanted = keys.filter((key) => key.length === this.#prefix.length + 32);
      if (wanted.length === 0) continue;
      const pipeline = node.pipeline();
      for (const key of wanted) pipeline.get(key);
      const values = (await withDeadline(pipeline.exec(), this.#timeoutMs * 5, this.kind)) ?? [];
      for (const [index, key] of wanted.entries()) {
        const [error, value] = values[index] ?? [];
        if (error) throw asStoreUnavailable(error, this.kind);
        if (typeof value === 'string') yield [key.subarray(this.#prefix.length), value] as const;
      }
    }
  }

  /** Each page of keys starting with `prefix`, SCANned master by master, with its master. */
  async *#scan(prefix: Buffer): AsyncIterable<readonly [Redis, Buffer[]]> {
    const pattern = `${prefix.toString('latin1')}*`;
    for (const node of this.#masters()) {
      let cursor = '0';
      do {
        const [next, keys] = await withDeadline(
          node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT),
          this.#timeoutMs * 5,
          this.kind,
        );
        cursor = next.toString();
        yield [node, keys] as const;
      } while (cursor !== '0');
    }
  }

  /**
   * Keys in the database of every master: exact when digestd has the database to itself and
   * nothing was removed (each removed digest's marker counts too).
   */
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
    this.#writes.flush();
    await Promise.all(
      [this.#writer, this.#reader].map(async (client) => {
        try {
          await withDeadline(client.quit(), this.#timeoutMs, this.kind);
        } catch {
          client.disconnect();
        }
      }),
    );
  }
}

/** Connects a client created with lazyConnect, or waits for the connection already under way. */
function connect(client: Redis | Cluster): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (client.status === 'wait') return client.connect();
  return new Promise<void>((resolve) => client.once('ready', () => resolve()));
}

/** Creates a Redis (one server) or Redis Cluster store; it connects on `ready()` or first use. */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}
