import { mkdtemp, rm } from 'node:fs/promises';
import { after, before } from 'node:test';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config/load.js';
import { createLogger, type Logger } from '../../src/log/logger.js';
import { createServer } from '../../src/server.js';
import type { MessageStore } from '../../src/store/types.js';

/** A Fastify app over a fresh LMDB store in a temporary directory, for inject() tests. */
export interface TestApp {
  app: FastifyInstance;
  /** The store as opened (closing it makes the app's store fail). */
  store: MessageStore;
  /** The LMDB directory. */
  directory: string;
  close(): Promise<void>;
}

/** What a test app may be given besides `digestd serve` flags. */
export interface TestAppOptions {
  /** @default a silent logger */
  logger?: Logger;
  /** Answer plain reads before Fastify on a listening app (src/http/fast-read.ts). @default true */
  fastRead?: boolean;
}

/**
 * Builds the server `digestd serve` builds in each worker (src/server.ts), from these `serve`
 * flags and no environment, over LMDB in a temporary directory and without TLS. Load shedding is
 * off unless the flags turn it on, so that a busy test machine does not answer 503.
 */
export async function buildTestApp(
  flags: readonly string[] = [],
  options: TestAppOptions = {},
): Promise<TestApp> {
  const directory = await mkdtemp(path.join(tmpdir(), 'digestd-app-'));
  try {
    const config = loadConfig(['--store', `lmdb:${directory}`, '--max-event-loop-delay', '0', ...flags], {});
    const { app, store } = await createServer(config, {
      logger: options.logger ?? createLogger({ level: 'silent' }),
      https: undefined,
      ...(options.fastRead !== undefined && { fastRead: options.fastRead }),
    });
    await app.ready();
    return {
      app,
      store,
      directory,
      async close() {
        await app.close();
        await rm(directory, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

/**
 * The test app of one test file: built before its tests and closed after them (so it offers no
 * close of its own). Read `app` and `store` inside the tests (they exist once `before` has run).
 */
export function useTestApp(flags: readonly string[] = []): Omit<TestApp, 'close'> {
  let built: TestApp | undefined;
  before(async () => {
    built = await buildTestApp(flags);
  });
  after(() => built?.close());
  const current = () => {
    if (built === undefined) throw new Error('the test app is built in before(); use it inside a test');
    return built;
  };
  return {
    get app() {
      return current().app;
    },
    get store() {
      return current().store;
    },
    get directory() {
      return current().directory;
    },
  };
}
