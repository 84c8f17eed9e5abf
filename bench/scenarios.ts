import { randomBytes } from 'node:crypto';

/** One request shape in a scenario's repeating plan. */
export type Step =
  /** GET a stored message picked at random from a pool of the given size class. */
  | { kind: 'hit'; pool: PoolName }
  /** GET a well-formed digest that is not stored. */
  | { kind: 'miss' }
  /** POST a message never sent before, padded to about `bytes` bytes. */
  | { kind: 'new'; bytes: number }
  /** POST the same message every time. */
  | { kind: 'repeat' };

export type PoolName = 'small' | '4k' | '64k';

/** A named workload: its steps repeat in order on every connection. */
export interface Scenario {
  name: string;
  description: string;
  steps: readonly Step[];
  /** Status codes that count as a correct answer. */
  expected: readonly number[];
}

const KiB = 1024;
const SMALL_NEW_BYTES = 32;

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'get-hit',
    description: 'GET a stored small message',
    steps: [{ kind: 'hit', pool: 'small' }],
    expected: [200],
  },
  {
    name: 'get-miss',
    description: 'GET an unknown digest (404)',
    steps: [{ kind: 'miss' }],
    expected: [404],
  },
  {
    name: 'post-new',
    description: 'POST a new small message (durable write)',
    steps: [{ kind: 'new', bytes: SMALL_NEW_BYTES }],
    expected: [201],
  },
  {
    name: 'post-repeat',
    description: 'POST the same message again',
    steps: [{ kind: 'repeat' }],
    expected: [201],
  },
  {
    name: 'mix-90-10',
    description: '90% GET hit, 10% POST new',
    steps: [
      ...Array.from({ length: 9 }, () => ({ kind: 'hit', pool: 'small' }) as const),
      { kind: 'new', bytes: SMALL_NEW_BYTES },
    ],
    expected: [200, 201],
  },
  {
    name: 'get-4k',
    description: 'GET a stored 4 KiB message',
    steps: [{ kind: 'hit', pool: '4k' }],
    expected: [200],
  },
  {
    name: 'post-4k',
    description: 'POST a new 4 KiB message',
    steps: [{ kind: 'new', bytes: 4 * KiB }],
    expected: [201],
  },
  {
    name: 'get-64k',
    description: 'GET a stored 64 KiB message',
    steps: [{ kind: 'hit', pool: '64k' }],
    expected: [200],
  },
  {
    name: 'post-64k',
    description: 'POST a new 64 KiB message',
    steps: [{ kind: 'new', bytes: 64 * KiB }],
    expected: [201],
  },
];

/** Whether a scenario only GETs: a static server (the nginx reference) answers it as digestd does. */
export function readsOnly(scenario: Scenario): boolean {
  return scenario.steps.every((step) => step.kind === 'hit' || step.kind === 'miss');
}

/** The stored message number `index` of the small class (also what --preload writes). */
export function smallMessage(index: number): string {
  return `stored message ${index}`;
}

/** The stored message number `index` of a large class, `bytes` long (ASCII). */
export function largeMessage(index: number, bytes: number): string {
  const head = `stored ${bytes}-byte message ${index} `;
  return head + 'x'.repeat(bytes - head.length);
}

export const LARGE_POOL_SIZES = {
  '4k': { count: 100, bytes: 4 * KiB },
  '64k': { count: 20, bytes: 64 * KiB },
} as const;

/** The message POSTed over and over by post-repeat (stored before the run). */
export const REPEATED_MESSAGE = 'the message everybody posts';

/** The messages the GET pools draw from; every one of them is stored in both servers. */
export interface Pools {
  small: string[];
  '4k': string[];
  '64k': string[];
}

/**
 * Picks the GET-hit pools. The small pool samples `sampleSize` messages uniformly from the whole
 * store of `storeSize` small messages, so reads land all over the B-tree, not in a few hot pages.
 */
export function makePools(storeSize: number, sampleSize = 10_000): Pools {
  const small: string[] = [];
  const count = Math.min(sampleSize, storeSize);
  for (let drawn = 0; drawn < count; drawn++) {
    small.push(smallMessage(count === storeSize ? drawn : Math.floor(Math.random() * storeSize)));
  }
  const large = (name: keyof typeof LARGE_POOL_SIZES) =>
    Array.from({ length: LARGE_POOL_SIZES[name].count }, (_, index) =>
      largeMessage(index, LARGE_POOL_SIZES[name].bytes),
    );
  return { small, '4k': large('4k'), '64k': large('64k') };
}

/** Digests that are certainly not stored (random 32 bytes). */
export function missDigests(count = 1000): string[] {
  return Array.from({ length: count }, () => randomBytes(32).toString('hex'));
}

/** A JSON body of a new message, unique by `prefix` and `counter`, about `bytes` long. */
export function newMessageBody(prefix: string, counter: number, bytes: number): string {
  const head = `${prefix}-${counter}`;
  return JSON.stringify({ message: head.length >= bytes ? head : head + 'x'.repeat(bytes - head.length) });
}
