import { freePort } from '../harness/free-port.js';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const run = promisify(execFile);

/** PostgreSQL used by the tests: trust authentication on loopback, database `test`. */
export const TEST_POSTGRES_URL =
  process.env.DIGESTD_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Decides whether a suite that needs an external service runs. Returns undefined (run) or a skip
 * reason. Under CI=true a missing service is an error, never a skip: CI must run every suite.
 */
export async function serviceSkip(
  service: string,
  available: () => Promise<unknown>,
  howToEnable: string,
): Promise<string | undefined> {
  try {
    await available();
    return undefined;
  } catch (error) {
    const reason = `${service} is not available (${(error as Error).message}); ${howToEnable}`;
    if (process.env.CI === 'true') throw new Error(`CI=true but ${reason}`, { cause: error });
    process.stdout.write(`# skipping: ${reason}\n`);
    return reason;
  }
}

/** Connects to the test PostgreSQL once. */
export async function postgresAvailable(url = TEST_POSTGRES_URL): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops what a PostgreSQL store made for `table`: its table, its denylist and their functions. */
export async function dropPostgresStore(client: pg.Client, table: string): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.query(`DROP TABLE IF EXISTS ${table}_removed`);
  await client.query(`DROP FUNCTION IF EXISTS ${table}_refuse_removed()`);
  await client.query(`DROP FUNCTION IF EXISTS ${table}_remove(bytea)`);
}

/** A test file's own PostgreSQL table, and a stallable TCP proxy in front of the server. */
export interface PostgresForTest {
  /** Why the file is skipped (PostgreSQL is not running outside CI), or undefined. */
  skip: string | undefined;
  /** A fresh table name, dropped after the file's tests. */
  table: string;
  /** Stalls and resumes the connections through `urlThroughProxy`; undefined when skipped. */
  proxy: TcpProxy | undefined;
  urlThroughProxy: string;
}

/** Sets up PostgreSQL for one test file: the skip decision, a table of its own, and the proxy. */
export async function postgresForTest(tablePrefix: string, howToEnable: string): Promise<PostgresForTest> {
  const skip = await serviceSkip('PostgreSQL', () => postgresAvailable(), howToEnable);
  const table = `${tablePrefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
  const target = new URL(TEST_POSTGRES_URL);
  const proxy = skip ? undefined : await startTcpProxy(target.hostname, Number(target.port || 5432));
  const throughProxy = new URL(TEST_POSTGRES_URL);
  throughProxy.hostname = '127.0.0.1';
  throughProxy.port = String(proxy?.port ?? 0);
  after(async () => {
    await proxy?.close();
    if (skip) return;
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    await dropPostgresStore(client, table);
    await client.end();
  });
  return { skip, table, proxy, urlThroughProxy: throughProxy.toString() };
}

/** The redis-server and redis-cli binaries run. */
export async function redisBinariesAvailable(): Promise<void> {
  await run('redis-server', ['--version']);
  await run('redis-cli', ['--version']);
}

export { freePort };
