import { freePort } from '../../scripts/lib/free-port.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';

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

/** The redis-server and redis-cli binaries run. */
export async function redisBinariesAvailable(): Promise<void> {
  await run('redis-server', ['--version']);
  await run('redis-cli', ['--version']);
}

export { freePort };
