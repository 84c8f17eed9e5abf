import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createDirectory } from '../directory.js';
import { removeFileDurably, writeFileDurably } from '../durable-file.js';
import type { Logger } from '../log/logger.js';

/** The file in the data directory where the primary says where it listens. */
export const LISTEN_FILE = 'listening.json';

/**
 * Where a running digestd serves, for tools on the same machine that did not see its flags (the
 * container's health check): written by the primary once every worker listens.
 */
export interface ListenRecord {
  /** The primary's PID. */
  pid: number;
  /** The bound base URL, e.g. `https://0.0.0.0:8443` (a wildcard host means every address). */
  url: string;
  /** The PEM file of the certificate served now (rewritten when it changes), or undefined with --no-tls. */
  cert: string | undefined;
  /** The PEM file of the local CA that signed `cert`; undefined for the operator's or an ACME certificate. */
  ca: string | undefined;
}

/**
 * Writes the record durably (a reader never sees half a file, a power cut never leaves an empty
 * one), creating the directory.
 */
export async function writeListenFile(dataDir: string, record: ListenRecord): Promise<void> {
  await createDirectory(dataDir);
  await writeFileDurably(path.join(dataDir, LISTEN_FILE), `${JSON.stringify(record)}\n`, 0o644);
}

/** Removes the record at a clean stop (a SIGKILLed primary leaves it; the next start replaces it). */
export async function removeListenFile(dataDir: string): Promise<void> {
  await removeFileDurably(path.join(dataDir, LISTEN_FILE));
}

/** Reads the record; rejects (ENOENT) when no digestd has listened with this data directory. */
export async function readListenFile(dataDir: string): Promise<ListenRecord> {
  const file = path.join(dataDir, LISTEN_FILE);
  let parsed: Partial<ListenRecord>;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<ListenRecord>;
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    // Left empty or cut short by a crash of an older version: the next start rewrites it.
    throw new Error(`${file} is not whole JSON; digestd rewrites it once it listens again`, { cause: error });
  }
  if (typeof parsed.pid !== 'number' || typeof parsed.url !== 'string') {
    throw new Error(`${file} is not a listen record`);
  }
  return {
    pid: parsed.pid,
    url: parsed.url,
    cert: typeof parsed.cert === 'string' ? parsed.cert : undefined,
    ca: typeof parsed.ca === 'string' ? parsed.ca : undefined,
  };
}

/**
 * Keeps listening.json current for the primary: `update()` writes what `record()` says now (once
 * every worker listens, and after each new certificate, so the health check trusts the one
 * served); writes run one at a time, and none after `remove()`.
 */
export class ListenFile {
  #writes = Promise.resolve();
  #removed = false;

  constructor(
    private readonly dataDir: string,
    private readonly logger: Logger,
    /** The record to write, or undefined while the workers do not all listen yet. */
    private readonly record: () => ListenRecord | undefined,
  ) {}

  update(): Promise<void> {
    this.#writes = this.#writes.then(async () => {
      const record = this.record();
      if (record === undefined || this.#removed) return;
      try {
        await writeListenFile(this.dataDir, record);
      } catch (error) {
        // Only the health check reads it: serving goes on, and the check reports what is missing.
        this.logger.error({ err: error }, `could not write ${LISTEN_FILE} in the data directory`);
      }
    });
    return this.#writes;
  }

  /** At a clean stop: waits for a write under way, then removes the file. */
  async remove(): Promise<void> {
    this.#removed = true;
    await this.#writes;
    await removeListenFile(this.dataDir).catch((error: unknown) =>
      this.logger.warn({ err: error }, `could not remove ${LISTEN_FILE}`),
    );
  }
}
