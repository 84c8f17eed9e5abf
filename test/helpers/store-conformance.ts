import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf } from '../../src/digest.js';
import { StoreUnavailable } from '../../src/errors.js';
import type { MessageStore } from '../../src/store/types.js';
import { openBackup, writeBackup } from '../../src/backup.js';
import { copyEntries } from '../../src/cli/copy.js';
import { verifiedEntries, verifiedStore, type Mismatch } from '../../src/store/verified.js';

/** How a backend's test file hands its store to the shared suite. */
export interface ConformanceTarget {
  /** Opens a store over the same underlying data each time it is called. */
  open(): Promise<MessageStore>;
  /**
   * Makes the backend unreachable or unresponsive (`begin`) and brings it back (`end`), for the
   * outage test. Absent for an embedded store, which has no network to lose.
   */
  outage?: { begin(): Promise<void>; end(): Promise<void> };
  /** count() may include keys that are not messages (a shared keyspace), so it is an upper bound. */
  countIsUpperBound?: boolean;
  /** Opens a new, empty store of the same kind (a restore's target), a different one each call. */
  openEmpty(): Promise<MessageStore>;
  /**
   * entries() walks one snapshot (LMDB, PostgreSQL): nothing written after the walk began is
   * listed. Otherwise (Redis SCAN) only what was stored before it began is sure to be.
   */
  snapshotEntries: boolean;
  /** A reason to skip the whole suite (service missing), printed by node:test. */
  skip?: string | undefined;
}

/** Time allowed for a backend to come back after an outage ends. */
const RECOVERY_MS = 30_000;

/**
 * The behaviour every MessageStore must show. Each backend's test file calls this once
 * (the pattern of unstorage's testDriver): LMDB, PostgreSQL, Redis, Redis Cluster.
 */
export function describeStoreConformance(name: string, target: ConformanceTarget): void {
  describe(`${name} store conformance`, { skip: target.skip ?? false }, () => {
    let store: MessageStore;
    before(async () => {
      store = await target.open();
      await store.ready();
    });
    after(async () => {
      await store.close();
    });

    it('round-trips a message by its digest', async () => {
      const message = `hello ${Math.random()}`;
      const digest = digestOf(message);
      await store.put(digest, message);
      assert.equal(await store.get(digest), message);
      assert.equal(await store.has(digest), true);
    });

    it('answers undefined and false for an unknown digest', async () => {
      const digest = digestOf(`never stored ${Math.random()}`);
      assert.equal(await store.get(digest), undefined);
      assert.equal(await store.has(digest), false);
    });

    it('stores the empty string as a message distinct from absence', async () => {
      const digest = digestOf('');
      await store.put(digest, '');
      assert.equal(await store.get(digest), '');
      assert.equal(await store.has(digest), true);
    });

    it('is idempotent: putting the same message twice keeps one copy', async () => {
      const message = `twice ${Math.random()}`;
      const digest = digestOf(message);
      await store.put(digest, message);
      const count = await store.count();
      await store.put(digest, message);
      assert.equal(await store.get(digest), message);
      if (count !== undefined) assert.equal(await store.count(), count, 'a second put adds no entry');
      let copies = 0;
      for await (const [key] of store.entries()) if (key.equals(digest)) copies += 1;
      assert.equal(copies, 1, 'one entry under the digest');
    });

    it('keeps every Unicode character and control byte intact', async () => {
      const message = `\u0000\u0001\n\r\t"\\ é 日本 🎉 \u{10FFFF} \uFEFF ${Math.random()}`;
      const digest = digestOf(message);
      await store.put(digest, message);
      assert.equal(await store.get(digest), message);
    });

    it('keys by all 32 digest bytes, including zero and high bytes', async () => {
      const first = Buffer.alloc(32, 0);
      const second = Buffer.alloc(32, 0xff);
      await store.put(first, 'all zero key');
      await store.put(second, 'all ff key');
      assert.equal(await store.get(first), 'all zero key');
      assert.equal(await store.get(second), 'all ff key');
    });

    it('stores a large message (1 MiB)', async () => {
      const message = 'x'.repeat(1024 * 1024 - 7) + Math.random().toFixed(5);
      const digest = digestOf(message);
      await store.put(digest, message);
      assert.equal(await store.get(digest), message);
    });

    it('survives 1,000 parallel puts over 100 distinct messages', async () => {
      const run = Math.random();
      const messages = Array.from({ length: 100 }, (_, index) => `parallel ${run} ${index}`);
      await Promise.all(
        Array.from({ length: 1000 }, (_, index) => {
          const message = messages[index % 100]!;
          return store.put(digestOf(message), message);
        }),
      );
      const read = await Promise.all(messages.map((message) => store.get(digestOf(message))));
      assert.deepEqual(read, messages);
    });

    it('stores a batch with putMany', async () => {
      const run = Math.random();
      const entries = Array.from({ length: 50 }, (_, index) => {
        const message = `batch ${run} ${index}`;
        return [digestOf(message), message] as const;
      });
      await store.putMany(entries);
      for (const [digest, message] of entries) assert.equal(await store.get(digest), message);
    });

    it('answers ping when healthy', async () => {
      await store.ping();
    });

    it('lists stored entries and their count', async () => {
      const message = `listed ${Math.random()}`;
      await store.put(digestOf(message), message);
      let found = false;
      let seen = 0;
      for await (const [digest, value] of store.entries()) {
        seen += 1;
        assert.equal(digest.length, 32);
        if (value === message) found = digestOf(value).equals(digest);
      }
      assert.ok(found, 'the new message is listed under its digest');
      const count = await store.count();
      if (count !== undefined && target.countIsUpperBound) assert.ok(count >= seen);
      else if (count !== undefined) assert.equal(count, seen);
    });

    it('walks entries while writes go on: everything stored before the walk is listed', async () => {
      const run = Math.random();
      const before = Array.from({ length: 1100 }, (_, index) => `before the walk ${run} ${index}`);
      await store.putMany(before.map((message) => [digestOf(message), message] as const));
      // Sorts after every digest, so a walk that read the table page by page would reach it.
      const late = Buffer.alloc(32, 0xff);
      late[31] = 0xfe;
      const lateMessage = `written during the walk ${run}`;
      const listed = new Set<string>();
      let writes: Promise<void> | undefined;
      for await (const [digest] of store.entries()) {
        if (writes === undefined) {
          await store.put(late, lateMessage);
          writes = Promise.all(
            Array.from({ length: 200 }, (_, index) => {
              const message = `during the walk ${run} ${index}`;
              return store.put(digestOf(message), message);
            }),
          ).then(() => {});
        }
        listed.add(digest.toString('hex'));
      }
      await writes;
      const missing = before.filter((message) => !listed.has(digestOf(message).toString('hex')));
      assert.deepEqual(missing, [], 'every message stored before the walk is listed');
      if (target.snapshotEntries) {
        assert.equal(
          listed.has(late.toString('hex')),
          false,
          'a snapshot lists nothing written after it began',
        );
      }
      assert.equal(await store.get(late), lateMessage);
    });

    it('backs up into a file that restores into an empty store, which then serves every message', async () => {
      const run = Math.random();
      const messages = [
        '',
        `\u0000\n"\\ é 日本 🎉 \u{10FFFF} ${run}`,
        ...Array.from({ length: 300 }, (_, index) => `backed up ${run} ${index}`),
      ];
      await store.putMany(messages.map((message) => [digestOf(message), message] as const));
      const directory = await mkdtemp(path.join(tmpdir(), 'digestd-backup-'));
      const restored = await target.openEmpty();
      try {
        const file = path.join(directory, 'backup.jsonl.gz');
        // Earlier tests stored entries under digests that are not their message's: left out.
        const written = await writeBackup(verifiedStore(store, { onMismatch: () => {} }), file);
        const reader = await openBackup(file);
        assert.equal(reader.header.store, store.kind);
        await restored.ready();
        const mismatched: Mismatch[] = [];
        const entries = verifiedEntries(reader.entries(), 'backup', (mismatch) => mismatched.push(mismatch));
        const copied = await copyEntries(entries, restored, { advance() {}, stop() {} });
        assert.equal(copied.copied + copied.present, written.messages);
        assert.deepEqual(mismatched, []);
        for (const message of messages) assert.equal(await restored.get(digestOf(message)), message);
      } finally {
        await restored.close();
        await rm(directory, { recursive: true, force: true });
      }
    });

    // The test's own timeout turns a hang into a failure.
    it(
      'fails fast with StoreUnavailable while the store is down, and recovers by itself',
      { skip: target.outage ? false : 'an embedded store has no outage to simulate', timeout: 120_000 },
      async () => {
        const outage = target.outage!;
        const before = `before the outage ${Math.random()}`;
        await store.put(digestOf(before), before);
        await outage.begin();
        try {
          const during = `during the outage ${Math.random()}`;
          await Promise.all([
            assert.rejects(store.put(digestOf(during), during), StoreUnavailable),
            assert.rejects(store.get(digestOf(before)), StoreUnavailable),
            assert.rejects(store.has(digestOf(before)), StoreUnavailable),
            assert.rejects(store.ping(), StoreUnavailable),
          ]);
        } finally {
          await outage.end();
        }
        const after = `after the outage ${Math.random()}`;
        const deadline = Date.now() + RECOVERY_MS;
        for (;;) {
          try {
            await store.ping();
            await store.put(digestOf(after), after);
            break;
          } catch (error) {
            assert.ok(
              error instanceof StoreUnavailable,
              `only StoreUnavailable while recovering: ${String(error)}`,
            );
            if (Date.now() > deadline) throw error;
            await sleep(200);
          }
        }
        assert.equal(await store.get(digestOf(after)), after);
        assert.equal(await store.get(digestOf(before)), before);
      },
    );

    it('keeps everything across close and reopen', async () => {
      const message = `reopened ${Math.random()}`;
      const digest = digestOf(message);
      await store.put(digest, message);
      await store.close();
      store = await target.open();
      await store.ready();
      assert.equal(await store.get(digest), message);
    });
  });
}
