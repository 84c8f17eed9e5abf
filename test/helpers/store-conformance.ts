import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf } from '../../src/digest.js';
import { MessageRemoved, StoreUnavailable } from '../../src/errors.js';
import { MUST_WAIT, REMOVED, type MessageStore, type RemovalWatcher } from '../../src/store/types.js';
import { openBackup, writeBackup } from '../../src/backup.js';
import { applyRemovals, copyEntries } from '../../src/cli/copy.js';
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
  /** The store tells other nodes of removals (watchRemovals), for their caches. */
  watched?: boolean;
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

    it('backs up into a file that restores into an empty store, which then serves every message and refuses every removed one', async () => {
      const run = Math.random();
      const messages = [
        '',
        `\u0000\n"\\ é 日本 🎉 \u{10FFFF} ${run}`,
        ...Array.from({ length: 300 }, (_, index) => `backed up ${run} ${index}`),
      ];
      await store.putMany(messages.map((message) => [digestOf(message), message] as const));
      const removed = `backed up, then removed ${run}`;
      await store.put(digestOf(removed), removed);
      await store.remove(digestOf(removed));
      const neverStored = digestOf(`listed without ever being stored ${run}`);
      await store.remove(neverStored);
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
        const listed = { count: 0 };
        const entries = verifiedEntries(
          applyRemovals(reader.records(), restored, listed),
          'backup',
          (mismatch) => mismatched.push(mismatch),
        );
        const copied = await copyEntries(entries, restored, { advance() {}, stop() {} });
        assert.equal(copied.copied + copied.present, written.messages);
        assert.deepEqual(mismatched, []);
        assert.ok(written.removed >= 2 && listed.count === written.removed, 'the denylist is carried');
        for (const message of messages) assert.equal(await restored.get(digestOf(message)), message);
        assert.equal(await restored.get(digestOf(removed)), REMOVED);
        assert.equal(await restored.get(neverStored), REMOVED);
        await assert.rejects(restored.put(digestOf(removed), removed), MessageRemoved);
      } finally {
        await restored.close();
        await rm(directory, { recursive: true, force: true });
      }
    });

    it('removes a message: its bytes are gone, get answers REMOVED, the digest is listed', async () => {
      const message = `to be removed ${Math.random()}`;
      const digest = digestOf(message);
      await store.put(digest, message);
      assert.equal(await store.remove(digest), 'removed');
      assert.equal(await store.get(digest), REMOVED);
      assert.ok([REMOVED, MUST_WAIT].includes(store.getSync(digest) as symbol), 'getSync tells it too');
      assert.equal(await store.has(digest), false);
      for await (const [key, value] of store.entries()) {
        assert.ok(!key.equals(digest) && value !== message, 'the message is not listed');
      }
      const listed: string[] = [];
      for await (const removed of store.removedDigests()) listed.push(removed.toString('hex'));
      assert.ok(listed.includes(digest.toString('hex')), 'the denylist lists the digest');
      assert.equal(await store.remove(digest), 'already_removed');
    });

    it('lists a digest never stored, and tells removed from absent', async () => {
      const removed = digestOf(`removed before it was ever posted ${Math.random()}`);
      const absent = digestOf(`never posted nor removed ${Math.random()}`);
      assert.equal(await store.remove(removed), 'not_stored');
      assert.equal(await store.get(removed), REMOVED);
      assert.equal(await store.get(absent), undefined);
      assert.equal(await store.has(removed), false);
    });

    it('refuses to store a removed message again, alone or in a batch with others', async () => {
      const message = `posted again after removal ${Math.random()}`;
      const digest = digestOf(message);
      await store.put(digest, message);
      await store.remove(digest);
      await assert.rejects(store.put(digest, message), MessageRemoved);
      const other = `stored beside a removed one ${Math.random()}`;
      await assert.rejects(
        store.putMany([
          [digestOf(other), other],
          [digest, message],
        ]),
        MessageRemoved,
      );
      assert.equal(await store.get(digest), REMOVED);
      assert.equal(await store.has(digest), false);
    });

    it('never brings a message back when puts race its removal', async () => {
      const run = Math.random();
      const messages = Array.from({ length: 40 }, (_, index) => `raced ${run} ${index}`);
      await Promise.all(
        messages.map(async (message, index) => {
          const digest = digestOf(message);
          // Half stored before the race, half first written by it.
          if (index % 2 === 0) await store.put(digest, message);
          const puts = Array.from({ length: 6 }, () =>
            store.put(digest, message).then(
              () => 'stored',
              (error: unknown) => {
                assert.ok(
                  error instanceof MessageRemoved,
                  `a racing put fails only as removed: ${String(error)}`,
                );
                return 'refused';
              },
            ),
          );
          await Promise.all([...puts.slice(0, 3), store.remove(digest), ...puts.slice(3)]);
        }),
      );
      for (const message of messages) {
        assert.equal(await store.get(digestOf(message)), REMOVED, `${message} stays removed`);
        assert.equal(await store.has(digestOf(message)), false);
      }
    });

    it(
      "tells another node's watcher of each removal, once live",
      { skip: target.watched ? false : 'no other node can hold a copy' },
      async () => {
        const other = await target.open();
        await other.ready();
        const heard: string[] = [];
        let live: () => void = () => {};
        const becameLive = new Promise<void>((resolve) => (live = resolve));
        const watcher: RemovalWatcher = {
          removed: (digest) => heard.push(digest.toString('hex')),
          live: () => live(),
          lost: () => {},
        };
        const watch = other.watchRemovals!(watcher);
        try {
          await becameLive;
          const message = `watched ${Math.random()}`;
          await store.put(digestOf(message), message);
          await store.remove(digestOf(message));
          const deadline = Date.now() + 10_000;
          while (!heard.includes(digestOf(message).toString('hex')) && Date.now() < deadline) await sleep(5);
          assert.ok(heard.includes(digestOf(message).toString('hex')), 'the removal was heard');
        } finally {
          await watch.close();
          await other.close();
        }
      },
    );

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

    it('keeps everything across close and reopen, the denylist included', async () => {
      const message = `reopened ${Math.random()}`;
      const digest = digestOf(message);
      await store.put(digest, message);
      const removed = `removed before reopening ${Math.random()}`;
      await store.put(digestOf(removed), removed);
      await store.remove(digestOf(removed));
      await store.close();
      store = await target.open();
      await store.ready();
      assert.equal(await store.get(digest), message);
      assert.equal(await store.get(digestOf(removed)), REMOVED);
      await assert.rejects(store.put(digestOf(removed), removed), MessageRemoved);
    });
  });
}
