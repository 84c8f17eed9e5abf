import { mkdtemp, rm } from 'node:fs/promises';
import { after, before } from 'node:test';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppOptions } from '../../src/http/app.js';
import { createLogger } from '../../src/log/logger.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import type { MessageStore } from '../../src/store/types.js';

/** A Fastify app over a fresh LMDB store in a temporary directory, for inject() tests. */
export interface TestApp {
  app: FastifyInstance;
  store: MessageStore;
  close(): Promise<void>;
}

export async function buildTestApp(overrides: Partial<AppOptions> = {}): Promise<TestApp> {
  const directory = await mkdtemp(path.join(tmpdir(), 'digestd-app-'));
  const store = overrides.store ?? (await LmdbStore.open({ path: directory }));
  const app = buildApp({
    store,
    logger: createLogger({ level: 'silent' }),
    maxMessageBytes: 1024 * 1024,
    ...overrides,
  });
  await app.ready();
  return {
    app,
    store,
    async close() {
      await app.close();
      await store.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * The test app of one test file: built before its tests and closed after them (so it offers no
 * close of its own). Read `app` and `store` inside the tests (they exist once `before` has run).
 */
export function useTestApp(overrides: Partial<AppOptions> = {}): Omit<TestApp, 'close'> {
  let built: TestApp | undefined;
  before(async () => {
    built = await buildTestApp(overrides);
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
  };
}
