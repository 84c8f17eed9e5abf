/**
 * Backup benchmark: what `digestd backup` costs on an LMDB store of a million messages, and what it
 * costs the writes served beside it.
 *
 *   npm run backup-bench
 *   node --import tsx scripts/backup-bench.ts --messages 100000 --connections 16 -- --workers 1
 *
 * 1. Fills a fresh LMDB store with --messages messages (about 100 bytes each).
 * 2. Times `digestd backup` to a plain and to a gzip file, `digestd verify --backup` and
 *    `digestd restore` into an empty LMDB store, and gives the sizes.
 * 3. Starts `digestd serve` on the store (arguments after `--` go to serve) and runs a write load
 *    (POSTs of new messages over --connections keep-alive connections, autocannon) three times,
 *    each as long as the plain backup took: alone, with `digestd backup` running beside it, alone
 *    again; it gives each window's rate and latency percentiles.
 *
 * Times are wall times of the whole command, start of the process included; a backup's own time
 * (the walk and the write, from its last line) is given beside.
 *
 * Prints a Markdown table on stdout (and the figures as JSON with --json). The figures depend on
 * the machine and on whatever else runs on it; docs/backup.md gives a run and its machine.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { digestOf } from '../src/digest.js';
import { createLmdbStore } from '../src/store/lmdb.js';
import { DIGESTD_BIN } from '../test/harness/digestd.js';
import { startServer, stopServer } from './lib/traffic.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const log = (line: string) => process.stderr.write(`${line}\n`);

/** Runs a digestd command to completion and returns its wall time in seconds and its stdout. */
async function timed(args: string[]): Promise<{ seconds: number; stdout: string }> {
  const started = process.hrtime.bigint();
  const { stdout } = await run(process.execPath, [DIGESTD_BIN, ...args], { maxBuffer: 16 * MiB });
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, stdout };
}

/** The time a backup reports for its walk and write, without the process's start. */
const reported = (result: { stdout: string }) => /in ([\d.]+) s to/.exec(result.stdout)?.[1] ?? '?';

/** A message of about 100 bytes, distinct for each index. */
const messageOf = (index: number, salt: string) =>
  `backup bench ${salt} message ${index.toString().padStart(8, '0')} ${'lorem ipsum dolor sit amet '.repeat(2)}`;

interface Window {
  label: string;
  seconds: number;
  requests: number;
  rate: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function main() {
  const { values, positionals } = parseArgs({
    options: {
      messages: { type: 'string', default: '1000000' },
      connections: { type: 'string', default: '16' },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  const count = Number(values.messages);
  const connections = Number(values.connections);
  const directory = await mkdtemp(path.join(tmpdir(), 'digestd-backup-bench-'));
  const storeDir = path.join(directory, 'data');
  const salt = randomBytes(4).toString('hex');
  try {
    log(`filling ${count} messages into ${storeDir}`);
    const fillStarted = Date.now();
    const store = await createLmdbStore({ path: storeDir, timeoutMs: 60_000 });
    for (let start = 0; start < count; start += 10_000) {
      const batch = [];
      for (let index = start; index < Math.min(count, start + 10_000); index += 1) {
        const message = messageOf(index, salt);
        batch.push([digestOf(message), message] as const);
      }
      await store.putMany(batch);
    }
    await store.close();
    const storeBytes = (await stat(path.join(storeDir, 'data.mdb'))).size;
    log(
      `filled in ${((Date.now() - fillStarted) / 1000).toFixed(1)} s; data.mdb ${(storeBytes / MiB).toFixed(1)} MiB`,
    );

    const plain = path.join(directory, 'backup.jsonl');
    const gzip = path.join(directory, 'backup.jsonl.gz');
    const backupPlain = await timed(['backup', '--store', `lmdb:${storeDir}`, '--to', plain]);
    log(backupPlain.stdout.trim());
    const backupGzip = await timed(['backup', '--store', `lmdb:${storeDir}`, '--to', gzip]);
    log(backupGzip.stdout.trim());
    const verifyPlain = await timed(['verify', '--backup', plain]);
    log(verifyPlain.stdout.trim());
    const restored = await timed([
      'restore',
      '--from',
      gzip,
      '--to',
      `lmdb:${path.join(directory, 'restored')}`,
    ]);
    log(restored.stdout.trim());
    const offline = {
      messages: count,
      storeMiB: storeBytes / MiB,
      backupPlainSeconds: backupPlain.seconds,
      backupPlainMiB: (await stat(plain)).size / MiB,
      backupGzipSeconds: backupGzip.seconds,
      backupGzipMiB: (await stat(gzip)).size / MiB,
      verifySeconds: verifyPlain.seconds,
      restoreSeconds: restored.seconds,
    };
    await rm(path.join(directory, 'restored'), { recursive: true, force: true });

    // The write load: alone, beside a backup, alone again; each window as long as a backup takes.
    const windowSeconds = Math.max(5, Math.round(backupPlain.seconds));
    const server = await startServer(storeDir, positionals);
    let sequence = 0;
    const load = (label: string, during?: () => Promise<unknown>): Promise<Window> =>
      new Promise((resolve, reject) => {
        const instance = autocannon(
          {
            url: `https://127.0.0.1:${server.port}`,
            connections,
            duration: during === undefined ? windowSeconds : windowSeconds * 10,
            servername: 'localhost',
            requests: [
              {
                method: 'POST',
                path: '/messages',
                headers: { 'content-type': 'application/json' },
                setupRequest: (request) => ({
                  ...request,
                  body: JSON.stringify({ message: `bench write ${salt} ${label} ${sequence++}` }),
                }),
              },
            ],
            // The local CA of the data directory signs the server's certificate.
            tlsOptions: { ca: server.digestd.ca },
          },
          (error, result) => {
            if (error) return reject(error instanceof Error ? error : new Error(String(error)));
            resolve({
              label,
              seconds: result.duration,
              requests: result.requests.total,
              rate: result.requests.total / result.duration,
              p50: result.latency.p50,
              p99: result.latency.p99,
              errors: result.errors + result.timeouts,
              non2xx: result.non2xx,
            });
          },
        );
        // Beside a backup, the window is the backup's run: the load stops when it exits.
        void during?.().then(
          () => instance.stop(),
          (error: unknown) => {
            instance.stop();
            reject(error instanceof Error ? error : new Error(String(error)));
          },
        );
      });
    const windows: Window[] = [];
    let besideBackup: { seconds: number; stdout: string } | undefined;
    try {
      windows.push(await load('writes alone'));
      windows.push(
        await load('writes beside digestd backup', async () => {
          besideBackup = await timed(['backup', '--store', `lmdb:${storeDir}`, '--to', plain]);
        }),
      );
      windows.push(await load('writes alone, after'));
    } finally {
      await stopServer(server);
    }
    log(besideBackup?.stdout.trim() ?? '');

    const figure = (value: number, digits = 1) => value.toFixed(digits);
    const table = [
      `| ${count.toLocaleString('en')} messages, LMDB | |`,
      '| --- | --- |',
      `| data.mdb | ${figure(offline.storeMiB)} MiB |`,
      `| backup, plain | ${figure(offline.backupPlainSeconds)} s (walk and write ${reported(backupPlain)} s), ${figure(offline.backupPlainMiB)} MiB |`,
      `| backup, gzip | ${figure(offline.backupGzipSeconds)} s (walk and write ${reported(backupGzip)} s), ${figure(offline.backupGzipMiB)} MiB |`,
      `| backup beside the write load | ${figure(besideBackup?.seconds ?? 0)} s (walk and write ${besideBackup === undefined ? '?' : reported(besideBackup)} s) |`,
      `| verify --backup (plain) | ${figure(offline.verifySeconds)} s |`,
      `| restore (gzip) into an empty LMDB store | ${figure(offline.restoreSeconds)} s |`,
      '',
      `| POST /messages, ${connections} connections | window | requests/s | p50 | p99 | errors, non-2xx |`,
      '| --- | --- | --- | --- | --- | --- |',
      ...windows.map(
        (window) =>
          `| ${window.label} | ${figure(window.seconds)} s | ${figure(window.rate, 0)} | ${window.p50} ms | ${window.p99} ms | ${window.errors}, ${window.non2xx} |`,
      ),
    ];
    process.stdout.write(`${table.join('\n')}\n`);
    if (values.json) process.stdout.write(`${JSON.stringify({ offline, windows }, null, 2)}\n`);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

await main();
