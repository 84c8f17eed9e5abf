import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { pipeline as pipe, Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { writeFileDurably } from './durable-file.js';
import { formatDigest, parseDigest, type Digest } from './digest.js';
import { BackupInvalid, systemErrorReason } from './errors.js';
import type { MessageStore } from './store/types.js';
import { VERSION } from './version.js';

/**
 * The backup file format (docs/backup.md): UTF-8 JSON lines. A header, one line per message or
 * removed digest, and a trailer that counts them and holds the SHA-256 of every byte before it, so
 * a truncated or altered file is told from a whole one. Gzip-compressed when the file name ends in
 * `.gz` (the reader looks at the content, not the name).
 */
export const BACKUP_FORMAT = 'digestd-backup';
/**
 * Raised when a reader of this version could not read the new files; older readers refuse them.
 * Version 2 added the records of removed digests; version 1 files are still read.
 */
export const BACKUP_VERSION = 2;

/** One record of a backup: a message under its digest, or a digest on the store's denylist. */
export type BackupRecord =
  | { readonly digest: Digest; readonly message: string; readonly removed?: undefined }
  | { readonly removed: Digest };

/** The first line of a backup. */
export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: number;
  /** The kind of store it was taken from (`lmdb`, `postgres`, `redis`, `redis-cluster`). */
  store: string;
  /** When the walk over the store began (ISO 8601, UTC). */
  created: string;
  /** The digestd version that wrote it. */
  digestd: string;
}

/** What writeBackup wrote. */
export interface BackupWritten {
  /** Message records in the file. */
  messages: number;
  /** Records of removed digests in the file. */
  removed: number;
  /** Size of the file on disk (compressed, when it is). */
  bytes: number;
  /** The trailer's checksum: SHA-256 of the uncompressed bytes before the trailer, in hex. */
  sha256: string;
}

/** Options of writeBackup. */
export interface WriteBackupOptions {
  /** Called once per entry written (for progress). */
  onEntry?: () => void;
}

/** Text handed to the file stream at a time: one write per record would cost more than the records. */
const CHUNK_CHARS = 64 * 1024;
/** Longer lines mean a damaged file: a message line is a JSON string of at most a few hundred MiB. */
const MAX_LINE_BYTES = 2 ** 30;

/**
 * Writes every entry of `store` to `file`, as the store's `entries()` walks it (one snapshot on
 * LMDB and PostgreSQL, see MessageStore.entries); give a verified store (store/verified.ts) so
 * that an entry that does not match its digest is left out. The denylist is read before the
 * messages and written first, so that a restore lists a digest before it meets the message; it is
 * read again after them, and the digests removed meanwhile follow the messages: whatever was
 * removed before the message walk began is never in the file, and anything removed during it is
 * listed. Memory stays bounded: entries stream from the
 * store to the file with backpressure. The file is written through writeFileDurably, so `file` is
 * either the previous content or the whole new backup, even across a power cut.
 */
export async function writeBackup(
  store: MessageStore,
  file: string,
  options: WriteBackupOptions = {},
): Promise<BackupWritten> {
  const header: BackupHeader = {
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    store: store.kind,
    created: new Date().toISOString(),
    digestd: VERSION,
  };
  const checksum = createHash('sha256');
  let messages = 0;
  let removed = 0;
  async function* text(): AsyncGenerator<string> {
    let chunk = `${JSON.stringify(header)}\n`;
    const listed = new Set<string>();
    for await (const digest of store.removedDigests()) {
      const hex = formatDigest(digest);
      listed.add(hex);
      chunk += `${JSON.stringify({ removed: hex })}\n`;
      removed += 1;
      if (chunk.length >= CHUNK_CHARS) {
        checksum.update(chunk);
        yield chunk;
        chunk = '';
      }
    }
    for await (const [digest, message] of store.entries()) {
      options.onEntry?.();
      chunk += `${JSON.stringify({ digest: formatDigest(digest), message })}\n`;
      messages += 1;
      if (chunk.length >= CHUNK_CHARS) {
        checksum.update(chunk);
        yield chunk;
        chunk = '';
      }
    }
    for await (const digest of store.removedDigests()) {
      const hex = formatDigest(digest);
      if (listed.has(hex)) continue;
      chunk += `${JSON.stringify({ removed: hex })}\n`;
      removed += 1;
      if (chunk.length >= CHUNK_CHARS) {
        checksum.update(chunk);
        yield chunk;
        chunk = '';
      }
    }
    checksum.update(chunk);
    sha256 = checksum.digest('hex');
    yield `${chunk}${JSON.stringify({ end: true, messages, removed, sha256 })}\n`;
  }
  let sha256 = '';
  const content = Readable.from(text());
  try {
    // Owner only: a backup holds every message.
    await writeFileDurably(
      file,
      file.endsWith('.gz') ? pipe(content, createGzip(), () => {}) : content,
      0o600,
    );
  } catch (error) {
    // A failure of the store being read passes as it is; one of the file system names the file.
    if ((error as NodeJS.ErrnoException).syscall === undefined) throw error;
    throw new Error(`Cannot write the backup ${file}: ${systemErrorReason(error)}.`, { cause: error });
  }
  return { messages, removed, bytes: (await stat(file)).size, sha256 };
}

/** A backup file opened for reading: its header, then its records. */
export interface BackupReader {
  header: BackupHeader;
  /**
   * Each message record as stored, in file order (removed digests are checked and skipped); the
   * caller checks that each message hashes to its digest. Rejects with BackupInvalid on a line
   * that is not a record, and, after the last record, when the trailer is missing (a truncated
   * file) or its counts or checksum differ.
   */
  entries(): AsyncIterable<readonly [Digest, string]>;
  /** Every record, messages and removed digests, in file order, checked as entries() checks them. */
  records(): AsyncIterable<BackupRecord>;
  /** Closes the file (entries() does so when it ends). */
  close(): Promise<void>;
}

/** Opens a backup file (plain or gzip) and reads its header; rejects with BackupInvalid if it is none. */
export async function openBackup(file: string): Promise<BackupReader> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new BackupInvalid(`Cannot read the backup ${file}: ${systemErrorReason(error)}.`);
  }
  const magic = Buffer.alloc(2);
  await handle.read(magic, 0, 2, 0);
  const raw = handle.createReadStream({ start: 0 });
  // A failure of either stream ends the other and reaches the reader of the last one.
  const bytes: AsyncIterable<Buffer> =
    magic[0] === 0x1f && magic[1] === 0x8b ? pipe(raw, createGunzip(), () => {}) : raw;
  const lines = splitLines(bytes)[Symbol.asyncIterator]();
  const fail = (line: number, why: string) => new BackupInvalid(`${file}, line ${line}: ${why}.`);
  const close = async () => {
    raw.destroy();
    await handle.close().catch(() => {});
  };

  let headerLine: Buffer | undefined;
  try {
    const first = await lines.next();
    headerLine = first.done === true ? undefined : first.value;
  } catch (error) {
    await close();
    throw readFailure(file, error);
  }
  const header =
    headerLine === undefined ? undefined : (parseLine(headerLine) as Partial<BackupHeader> | undefined);
  if (header?.format !== BACKUP_FORMAT) {
    await close();
    throw new BackupInvalid(
      `${file} is not a digestd backup (its first line is no ${BACKUP_FORMAT} header).`,
    );
  }
  if (typeof header.version !== 'number' || header.version > BACKUP_VERSION) {
    await close();
    throw new BackupInvalid(
      `${file} is a backup of format version ${String(header.version)}; this digestd reads versions 1 to ${BACKUP_VERSION} (upgrade digestd).`,
    );
  }
  const checksum = createHash('sha256').update(headerLine!).update('\n');
  const version = header.version;

  async function* entries(): AsyncGenerator<readonly [Digest, string]> {
    for await (const record of records()) {
      if (record.removed === undefined) yield [record.digest, record.message] as const;
    }
  }

  async function* records(): AsyncGenerator<BackupRecord> {
    let number = 1;
    let messages = 0;
    let removed = 0;
    try {
      for (;;) {
        const next = await lines.next();
        number += 1;
        if (next.done) throw fail(number, 'the file ends without a trailer (it is truncated)');
        const record = parseLine(next.value) as Record<string, unknown> | undefined;
        if (record === undefined) throw fail(number, 'not a JSON object');
        if (record.end === true) {
          if (record.messages !== messages) {
            throw fail(
              number,
              `the trailer counts ${String(record.messages)} messages, the file holds ${messages}`,
            );
          }
          // Version 1 has no removed digests, and its trailer does not count them.
          if ((record.removed ?? 0) !== removed) {
            throw fail(
              number,
              `the trailer counts ${String(record.removed)} removed digests, the file holds ${removed}`,
            );
          }
          if (record.sha256 !== checksum.digest('hex')) {
            throw fail(
              number,
              'the checksum in the trailer does not match the content (the file was altered)',
            );
          }
          if (!(await lines.next()).done) throw fail(number + 1, 'there is more after the trailer');
          return;
        }
        if (record.removed !== undefined && version >= 2) {
          const listed = typeof record.removed === 'string' ? parseDigest(record.removed) : undefined;
          if (listed === undefined) throw fail(number, 'not a digest (64 hex digits) after "removed"');
          checksum.update(next.value).update('\n');
          removed += 1;
          yield { removed: listed };
          continue;
        }
        const digest = typeof record.digest === 'string' ? parseDigest(record.digest) : undefined;
        if (digest === undefined || typeof record.message !== 'string') {
          throw fail(number, 'not a record of a digest and a message');
        }
        checksum.update(next.value).update('\n');
        messages += 1;
        yield { digest, message: record.message };
      }
    } catch (error) {
      throw readFailure(file, error);
    } finally {
      await close();
    }
  }
  return { header: header as BackupHeader, entries, records, close };
}

function readFailure(file: string, error: unknown): BackupInvalid {
  if (error instanceof BackupInvalid) return error;
  return new BackupInvalid(`Cannot read the backup ${file}: ${systemErrorReason(error).replace(/\.$/, '')}.`);
}

function parseLine(line: Buffer): object | undefined {
  try {
    const value: unknown = JSON.parse(line.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The lines of a byte stream, without their newline. Throws on a line longer than any record. */
async function* splitLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of chunks) {
    let start = 0;
    for (let end = chunk.indexOf(0x0a); end !== -1; end = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, end);
      yield pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
      pending = [];
      pendingBytes = 0;
      start = end + 1;
    }
    if (start < chunk.length) {
      pending.push(chunk.subarray(start));
      pendingBytes += chunk.length - start;
      if (pendingBytes > MAX_LINE_BYTES) throw new Error('a line is longer than any record can be');
    }
  }
  // A whole backup ends with a newline.
  if (pending.length > 0) throw new Error('the file ends in the middle of a line (it is truncated)');
}
