import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes `content` to `file` so that a power cut at any moment leaves either the previous file or
 * the whole new one: the content goes to a temporary name beside it, is fsynced, renamed over
 * `file`, and the directory is fsynced so that the rename itself is on disk. Without the first
 * fsync a file system with delayed allocation (ext4, XFS) can keep the rename and lose the data,
 * leaving `file` empty after the power comes back. The mode is set on the temporary file before
 * anything is written to it, so a key is never readable by others, not even briefly. A stream
 * (an async iterable) is written as it comes, one chunk at a time.
 */
export async function writeFileDurably(
  file: string,
  content: string | Uint8Array | AsyncIterable<string | Uint8Array>,
  mode = 0o644,
): Promise<void> {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const handle = await open(temporary, 'wx', mode);
    try {
      // The umask may have narrowed the mode given to open; chmod sets exactly this one.
      await handle.chmod(mode);
      if (typeof content === 'string' || content instanceof Uint8Array) await handle.writeFile(content);
      // Each chunk from where the last one ended (FileHandle.writeFile writes at the current position).
      else for await (const chunk of content) await handle.writeFile(chunk);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  await syncDirectory(path.dirname(file));
}

/** Removes `file` (nothing when it is absent) and makes the removal durable. */
export async function removeFileDurably(file: string): Promise<void> {
  await rm(file, { force: true });
  await syncDirectory(path.dirname(file));
}

/**
 * Fsyncs a directory, which makes the names created, renamed or removed in it durable (on Linux a
 * directory opened read-only can be fsynced).
 */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
