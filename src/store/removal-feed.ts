import { randomBytes } from 'node:crypto';
import type { Digest } from '../digest.js';
import type { RemovalWatcher } from './types.js';

/** How often each watching process sends a heartbeat through the removal channel. */
export const HEARTBEAT_INTERVAL_MS = 500;
/**
 * How long a heartbeat may take to come back before the channel counts as lost. Together with the
 * interval, the longest a removal can go unnoticed by a cache whose channel broke without a word.
 */
export const HEARTBEAT_TIMEOUT_MS = 1000;

/** Options of a heartbeat-checked removal feed. */
export interface HeartbeatFeedOptions {
  watcher: RemovalWatcher;
  /** Sends a text on the channel (a NOTIFY, a PUBLISH) through the store's ordinary connection. */
  publish: (text: string) => Promise<void>;
  /** A removal's text (its hex digest) back to its digest; undefined for anything else. */
  parseDigest: (text: string) => Digest | undefined;
  /**
   * Called each time a heartbeat is missed: the backend subscribes again (idempotent), for a
   * client that lost its subscription without noticing. @default nothing
   */
  resubscribe?: () => void;
  /** @default HEARTBEAT_INTERVAL_MS */
  intervalMs?: number;
  /** @default HEARTBEAT_TIMEOUT_MS */
  timeoutMs?: number;
}

const HEARTBEAT_PREFIX = 'heartbeat:';

/**
 * The part of a removal channel every backend shares: it passes removals on to the watcher and
 * tells whether notifications are known to arrive. The channel is live once subscribed and one of
 * this process's own heartbeats (sent through the store, like a removal's notification) has come
 * back through the subscription; it is lost as soon as the backend reports its subscription
 * dropped, or a heartbeat is not back within the timeout (a half-open connection, a stalled
 * server, a cluster node that stopped forwarding). A removal committed at time T is thus either
 * delivered within the timeout, or the watcher hears `lost` by T + interval + timeout: the next
 * heartbeat after the last one that came back is sent within the interval and missed within the
 * timeout.
 */
export class HeartbeatFeed {
  readonly #options: Required<HeartbeatFeedOptions>;
  /** Tells this process's heartbeats from other nodes' (which share the channel). */
  readonly #id = randomBytes(6).toString('hex');
  #sequence = 0;
  /** Heartbeats sent and not yet back, by sequence number. */
  readonly #outstanding = new Set<number>();
  #subscribed = false;
  #live = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: HeartbeatFeedOptions) {
    this.#options = {
      intervalMs: HEARTBEAT_INTERVAL_MS,
      timeoutMs: HEARTBEAT_TIMEOUT_MS,
      resubscribe: () => {},
      ...options,
    };
  }

  /** Starts sending heartbeats; the feed is lost until subscribed and a heartbeat is back. */
  start(): void {
    this.#timer = setInterval(() => this.#beat(), this.#options.intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#subscribed = false;
    this.#live = false;
  }

  /** The backend's subscription is in place: the next heartbeat back makes the feed live. */
  subscribed(): void {
    this.#subscribed = true;
    this.#outstanding.clear();
    this.#beat();
  }

  /** The backend's subscription dropped: notifications may be missed until it is made again. */
  disconnected(): void {
    this.#subscribed = false;
    this.#lose();
  }

  /** A text received on the channel: a removal, or a heartbeat (this process's or another's). */
  receive(text: string): void {
    if (text.startsWith(HEARTBEAT_PREFIX)) {
      const [id, sequence] = text.slice(HEARTBEAT_PREFIX.length).split(':');
      if (id !== this.#id || !this.#subscribed) return;
      const number = Number(sequence);
      if (!this.#outstanding.has(number)) return;
      // Everything sent before this heartbeat has had its chance to arrive.
      for (const sent of this.#outstanding) if (sent <= number) this.#outstanding.delete(sent);
      if (!this.#live) {
        this.#live = true;
        this.#options.watcher.live();
      }
      return;
    }
    const digest = this.#options.parseDigest(text);
    if (digest !== undefined) this.#options.watcher.removed(digest);
  }

  #beat(): void {
    if (!this.#subscribed) return;
    const sequence = (this.#sequence += 1);
    this.#outstanding.add(sequence);
    // A heartbeat that cannot be sent never comes back, which its timer notices.
    this.#options.publish(`${HEARTBEAT_PREFIX}${this.#id}:${sequence}`).catch(() => {});
    setTimeout(() => {
      if (!this.#outstanding.has(sequence)) return;
      this.#lose();
      this.#options.resubscribe();
    }, this.#options.timeoutMs).unref();
  }

  /** Notifications may have been missed: the watcher flushes what it holds and stops trusting it. */
  #lose(): void {
    this.#outstanding.clear();
    this.#live = false;
    this.#options.watcher.lost();
  }
}
