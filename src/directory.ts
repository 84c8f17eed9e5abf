import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from './durable-file.js';
import { systemErrorReason } from './errors.js';

/**
 * Creates `directory` and its missing parents, one level at a time, each made durable (its parent
 * fsynced), and rejects with a sentence
 * naming the directory and the cause. Node's `mkdir(..., { recursive: true })` never returns where
 * a filesystem refuses new entries with ENOENT (procfs, sysfs): it creates the parent again and
 * retries for ever.
 */
export async function createDirectory(directory: string, mode?: number): Promise<void> {
  const missing: string[] = [];
  for (let current = path.resolve(directory); ; current = path.dirname(current)) {
    const found = await stat(current).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw directoryError(directory, error);
    });
    if (found !== undefined) {
      if (!found.isDirectory())
        throw new Error(`Cannot create the directory ${directory}: ${current} is not a directory.`);
      break;
    }
    missing.unshift(current);
    if (current === path.dirname(current)) break;
  }
  for (const each of missing) {
    const created = await mkdir(each, { mode }).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw directoryError(directory, error);
        return false;
      },
    );
    // The new name must survive a power cut, or the files made in it go with it.
    if (created)
      await syncDirectory(path.dirname(each)).catch((error: NodeJS.ErrnoException) => {
        throw directoryError(directory, error);
      });
  }
}

function directoryError(directory: string, error: NodeJS.ErrnoException): Error {
  const reason = systemErrorReason(error);
  const where =
    error.path !== undefined && error.path !== path.resolve(directory) ? ` (at ${error.path})` : '';
  return new Error(`Cannot create the directory ${directory}: ${reason}${where}.`, { cause: error });
}
