import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { BACKUP_FORMAT, BACKUP_VERSION, openBackup, writeBackup } from '../../src/backup.js';
import { digestOf, formatDigest } from '../../src/digest.js';
import { BackupInvalid, StoreUnavailable } from '../../src/errors.js';
import { createLmdbStore, type LmdbStore } from '../../src/store/lmdb.js';
import { verifiedStore } from '../../src/store/verified.js';
import type { MessageStore } from '../../src/store/types.js';
import { STORE_TIMEOUT_MS } from '../helpers/store-options.js';

const directory = await mkdtemp(path.join(tmpdir(), 'digestd-backup-unit-'));
after(() => rm(directory, { recursive: true, force: true }));

const messages = [
  '',
  'one',
  '\u0000\n"\\ é 日本 🎉 \u{10FFFF}',
  ...Array.from({ length: 2000 }, (_, i) => `m ${i}`),
];

/** Every record of a backup, read through openBackup. */
async function readAll(file: string): Promise<Map<string, string>> {
  const reader = await openBackup(file);
  const read = new Map<string, string>();
  for await (const [digest, message] of reader.entries()) read.set(formatDigest(digest), message);
  return read;
}

describe('backup files', () => {
  let store: LmdbStore;
  let plain: string;
  before(async () => {
    store = await createLmdbStore({ path: path.join(directory, 'store'), timeoutMs: STORE_TIMEOUT_MS });
    await store.putMany(messages.map((message) => [digestOf(message), message] as const));
    plain = path.join(directory, 'plain.jsonl');
    await writeBackup(store, plain);
  });
  after(() => store.close());

  it('hold a header, one JSON line per message and a trailer with their count and checksum', async () => {
    const lines = (await readFile(plain, 'utf8')).split('\n');
    assert.equal(lines.pop(), '', 'the file ends with a newline');
    const header = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(header.format, BACKUP_FORMAT);
    assert.equal(header.version, BACKUP_VERSION);
    assert.equal(header.store, 'lmdb');
    const trailer = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    assert.equal(trailer.messages, messages.length);
    const before = Buffer.from(lines.slice(0, -1).join('\n') + '\n', 'utf8');
    assert.equal(trailer.sha256, digestOf(before).toString('hex'));
    const records = lines.slice(1, -1).map((line) => JSON.parse(line) as { digest: string; message: string });
    assert.equal(records.length, messages.length);
    for (const { digest, message } of records) assert.equal(digest, formatDigest(digestOf(message)));
  });

  it('read back every message, plain or gzip-compressed (by content, whatever the name)', async () => {
    const expected = new Map(messages.map((message) => [formatDigest(digestOf(message)), message]));
    assert.deepEqual(await readAll(plain), expected);
    const compressed = path.join(directory, 'compressed.jsonl.gz');
    const written = await writeBackup(store, compressed);
    const raw = await readFile(compressed);
    assert.deepEqual([raw[0], raw[1]], [0x1f, 0x8b]);
    assert.equal(written.bytes, raw.length);
    assert.deepEqual(await readAll(compressed), expected);
    const renamed = path.join(directory, 'compressed-without-suffix');
    await writeFile(renamed, raw);
    assert.deepEqual(await readAll(renamed), expected);
  });

  it('are refused when truncated, altered, not a backup, or of a newer format', async () => {
    const text = await readFile(plain, 'utf8');
    const lines = text.split('\n');
    const cases: [string, string | Buffer, RegExp][] = [
      ['cut mid-line', text.slice(0, Math.floor(text.length / 2)), /truncated/],
      ['cut before the trailer', `${lines.slice(0, -2).join('\n')}\n`, /without a trailer/],
      [
        'a record dropped',
        [...lines.slice(0, 5), ...lines.slice(6)].join('\n'),
        /counts 2003 messages, the file holds 2002/,
      ],
      ['a message changed', text.replace('"m 7"', '"m 8"'), /checksum/],
      ['more after the trailer', `${text}{"digest":"00"}\n`, /more after the trailer/],
      ['a line that is no record', text.replace(lines[3]!, '{"digest":"zz","message":"x"}'), /not a record/],
      ['gzip cut short', gzipSync(text).subarray(0, 2000), /unexpected end of file/],
      ['not a backup', 'hello\n', /is not a digestd backup/],
      ['empty', '', /is not a digestd backup/],
      [
        'a newer format',
        text.replace(`"version":${BACKUP_VERSION}`, `"version":${BACKUP_VERSION + 1}`),
        /format version 3; this digestd reads versions 1 to 2/,
      ],
    ];
    for (const [name, content, reason] of cases) {
      const file = path.join(directory, `damaged-${name.replaceAll(' ', '-')}`);
      await writeFile(file, content);
      await assert.rejects(readAll(file), (error: unknown) => {
        assert.ok(error instanceof BackupInvalid, `${name}: ${String(error)}`);
        assert.match(error.message, reason, name);
        return true;
      });
    }
  });

  it('leave out, through the verified store, each entry whose message does not hash to its digest', async () => {
    const raw = await createLmdbStore({
      path: path.join(directory, 'with-mismatch'),
      timeoutMs: STORE_TIMEOUT_MS,
    });
    const wrong = digestOf('the right one');
    await raw.putMany([
      [wrong, 'a wrong one'],
      [digestOf('right'), 'right'],
    ]);
    const reported: string[] = [];
    const verified = verifiedStore(raw, { onMismatch: ({ digest }) => reported.push(formatDigest(digest)) });
    try {
      const file = path.join(directory, 'with-mismatch.jsonl');
      const written = await writeBackup(verified, file);
      assert.deepEqual(reported, [formatDigest(wrong)]);
      assert.equal(written.messages, 1);
      assert.deepEqual([...(await readAll(file)).keys()], [formatDigest(digestOf('right'))]);
    } finally {
      await verified.close();
    }
  });

  it('keep the previous file and leave no temporary file when the store fails midway', async () => {
    const file = path.join(directory, 'kept.jsonl');
    await writeBackup(store, file);
    const previous = await readFile(file);
    let read = 0;
    const failing: MessageStore = Object.create(store) as MessageStore;
    failing.entries = async function* () {
      for await (const entry of store.entries()) {
        read += 1;
        // Past the first chunk, so part of the new file is already on disk.
        if (read === 1500) throw new StoreUnavailable('The lmdb store failed to read.');
        yield entry;
      }
    };
    failing.removedDigests = () => store.removedDigests();
    Object.defineProperty(failing, 'kind', { value: 'lmdb' });
    await assert.rejects(writeBackup(failing, file), StoreUnavailable);
    assert.deepEqual(await readFile(file), previous);
    assert.deepEqual(
      (await readdir(directory)).filter((name) => name.startsWith('kept.jsonl.')),
      [],
    );
  });

  it('are not written into a directory that does not exist, and say which file', async () => {
    await assert.rejects(
      writeBackup(store, path.join(directory, 'missing', 'x.jsonl')),
      /Cannot write the backup .*missing\/x\.jsonl: no such file or directory/,
    );
  });

  it('carry the denylist: removed digests before the messages, and those removed during the walk after them', async () => {
    const source = await createLmdbStore({
      path: path.join(directory, 'with-removals'),
      timeoutMs: STORE_TIMEOUT_MS,
    });
    try {
      await source.putMany(
        ['kept', 'removed before', 'removed during'].map((m) => [digestOf(m), m] as const),
      );
      await source.remove(digestOf('removed before'));
      const file = path.join(directory, 'with-removals.jsonl');
      // Removed while the messages are walked: after the first listing, before the second.
      const during: MessageStore = Object.create(source) as MessageStore;
      during.removedDigests = () => source.removedDigests();
      during.entries = async function* () {
        yield* source.entries();
        await source.remove(digestOf('removed during'));
      };
      Object.defineProperty(during, 'kind', { value: 'lmdb' });
      const written = await writeBackup(during, file);
      assert.equal(written.removed, 2);
      const lines = (await readFile(file, 'utf8'))
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.deepEqual(lines[1], { removed: formatDigest(digestOf('removed before')) });
      assert.deepEqual(lines.at(-2), { removed: formatDigest(digestOf('removed during')) });
      assert.equal(lines.at(-1)?.removed, 2);
      const reader = await openBackup(file);
      const kinds: string[] = [];
      for await (const record of reader.records())
        kinds.push(record.removed === undefined ? record.message : 'removed');
      // The messages come in the store's (digest) order, between the two listings.
      assert.deepEqual(
        [kinds[0], kinds.slice(1, -1).sort(), kinds.at(-1)],
        ['removed', ['kept', 'removed during'], 'removed'],
      );
    } finally {
      await source.close();
    }
  });

  it('of format version 1 (no removed digests) are still read; a removed record there, or a miscounted one, is refused', async () => {
    const records = ['a', 'b'].map((message) =>
      JSON.stringify({ digest: formatDigest(digestOf(message)), message }),
    );
    const header = JSON.stringify({
      format: BACKUP_FORMAT,
      version: 1,
      store: 'lmdb',
      created: 'x',
      digestd: '0',
    });
    const body = `${header}\n${records.join('\n')}\n`;
    const v1 = path.join(directory, 'version-1.jsonl');
    await writeFile(
      v1,
      `${body}${JSON.stringify({ end: true, messages: 2, sha256: digestOf(body).toString('hex') })}\n`,
    );
    assert.deepEqual([...(await readAll(v1)).values()], ['a', 'b']);

    const listed = `${body}${JSON.stringify({ removed: formatDigest(digestOf('c')) })}\n`;
    const v1Removed = path.join(directory, 'version-1-removed.jsonl');
    await writeFile(
      v1Removed,
      `${listed}${JSON.stringify({ end: true, messages: 2, sha256: digestOf(listed).toString('hex') })}\n`,
    );
    await assert.rejects(readAll(v1Removed), /not a record/);

    const v2Body = listed.replace('"version":1', `"version":${BACKUP_VERSION}`);
    const miscounted = path.join(directory, 'version-2-miscounted.jsonl');
    await writeFile(
      miscounted,
      `${v2Body}${JSON.stringify({ end: true, messages: 2, removed: 0, sha256: digestOf(v2Body).toString('hex') })}\n`,
    );
    await assert.rejects(readAll(miscounted), /counts 0 removed digests, the file holds 1/);
  });

  it('are written owner-only and gunzip to the same lines as the plain file', async () => {
    const compressed = path.join(directory, 'again.jsonl.gz');
    await writeBackup(store, compressed);
    const { mode } = await stat(compressed);
    assert.equal(mode & 0o777, 0o600);
    const lines = gunzipSync(await readFile(compressed))
      .toString('utf8')
      .split('\n');
    const plainLines = (await readFile(plain, 'utf8')).split('\n');
    // Header (its time) and trailer (the checksum covers the header) differ; the records do not.
    assert.deepEqual(lines.slice(1, -2), plainLines.slice(1, -2));
  });
});
