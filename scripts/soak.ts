/**
 * Soak: a long mixed load against one digestd process tree on loopback, sampling its memory, and
 * counting every error and every unexpected status.
 *
 *   npm run soak                                   (10 minutes)
 *   node --import tsx scripts/soak.ts --duration 120 --connections 16 -- --workers 2
 *
 * The mix, per request: 55% GET of a stored message (200), 20% POST of a new message (201),
 * 10% POST of a stored message again (201), 10% GET of an unknown digest (404), 5% POST of an
 * invalid body (400). Exits 1 on any error, timeout, 5xx or unexpected status, or when anonymous
 * memory (heap, not the LMDB file pages the kernel maps in) grows more than --max-growth-percent
 * from the early plateau to the end.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { treeMemory } from '../test/harness/proc.js';
import { isRunning, killGroup, send, sha256Hex, startServer, stopServer } from './lib/traffic.js';

const MiB = 1024 * 1024;

interface Sample {
  seconds: number;
  rssMiB: number;
  anonMiB: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};

async function main() {
  const { values, positionals } = parseArgs({
    options: {
      duration: { type: 'string', default: '600' },
      connections: { type: 'string', default: '32' },
      'sample-seconds': { type: 'string', default: '10' },
      'max-growth-percent': { type: 'string', default: '20' },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  const durationSeconds = Number(values.duration);
  const sampleSeconds = Number(values['sample-seconds']);
  const log = (line: string) => process.stderr.write(`${line}\n`);

  const dataDir = await mkdtemp(path.join(tmpdir(), 'digestd-soak-'));
  const server = await startServer(dataDir, positionals);
  try {
    // Stored messages for the reads.
    const stored: string[] = [];
    for (let index = 0; index < 1000; index++) {
      const message = `soak seed ${index} ${randomBytes(8).toString('hex')} ${'é'.repeat(index % 300)}`;
      const reply = await send(server, 'POST', '/messages', JSON.stringify({ message }));
      if (reply.status !== 201) throw new Error(`seeding answered ${reply.status}`);
      stored.push(message);
    }
    const storedDigests = stored.map((message) => sha256Hex(message));

    const samples: Sample[] = [];
    const started = Date.now();
    const sample = async () => {
      const memory = await treeMemory(server.digestd.process.pid!);
      const entry = {
        seconds: Math.round((Date.now() - started) / 1000),
        rssMiB: Number((memory.rssBytes / MiB).toFixed(1)),
        anonMiB: Number((memory.rssAnonBytes / MiB).toFixed(1)),
      };
      samples.push(entry);
      log(`t=${entry.seconds}s rss=${entry.rssMiB} MiB anon=${entry.anonMiB} MiB`);
    };
    await sample();
    const sampler = setInterval(() => void sample(), sampleSeconds * 1000);

    let unexpected = 0;
    let serverErrors = 0;
    const unexpectedExamples: string[] = [];
    let sequence = 0;
    const result = await autocannon({
      url: `https://127.0.0.1:${server.port}`,
      connections: Number(values.connections),
      duration: durationSeconds,
      servername: 'localhost',
      requests: [
        {
          setupRequest: (request, context: { expected?: number }) => {
            const roll = Math.random();
            const json = { 'content-type': 'application/json' };
            if (roll < 0.55) {
              context.expected = 200;
              return {
                ...request,
                method: 'GET',
                path: `/messages/${storedDigests[randomInt(stored.length)]}`,
                headers: {},
                body: '',
              };
            }
            if (roll < 0.75) {
              context.expected = 201;
              const message = `soak ${process.pid} ${sequence++} ${randomBytes(6).toString('hex')}`;
              return {
                ...request,
                method: 'POST',
                path: '/messages',
                headers: json,
                body: JSON.stringify({ message }),
              };
            }
            if (roll < 0.85) {
              context.expected = 201;
              const message = stored[randomInt(stored.length)]!;
              return {
                ...request,
                method: 'POST',
                path: '/messages',
                headers: json,
                body: JSON.stringify({ message }),
              };
            }
            if (roll < 0.95) {
              context.expected = 404;
              return {
                ...request,
                method: 'GET',
                path: `/messages/${randomBytes(32).toString('hex')}`,
                headers: {},
                body: '',
              };
            }
            context.expected = 400;
            return { ...request, method: 'POST', path: '/messages', headers: json, body: '{"message": 42}' };
          },
          onResponse: (status, body, context: { expected?: number }) => {
            if (status >= 500) serverErrors++;
            if (status !== context.expected) {
              unexpected++;
              if (unexpectedExamples.length < 5)
                unexpectedExamples.push(`${status} (expected ${context.expected}): ${body.slice(0, 200)}`);
            }
          },
        },
      ],
    });
    clearInterval(sampler);
    await sample();

    const warm = samples.filter(
      (entry) => entry.seconds >= durationSeconds * 0.2 && entry.seconds < durationSeconds * 0.4,
    );
    const late = samples.filter((entry) => entry.seconds >= durationSeconds * 0.8);
    const plateau = median(warm.map((entry) => entry.anonMiB));
    const end = median(late.map((entry) => entry.anonMiB));
    const growthPercent = plateau > 0 ? Number((((end - plateau) / plateau) * 100).toFixed(1)) : 0;
    const exitCode = await stopServer(server);

    const summary = {
      durationSeconds,
      connections: Number(values.connections),
      requests: result.requests.total,
      requestsPerSecond: Math.round(result.requests.average),
      latencyMs: {
        p50: result.latency.p50,
        p97_5: result.latency.p97_5,
        p99: result.latency.p99,
        max: result.latency.max,
      },
      statusCodes: result.statusCodeStats,
      errors: result.errors,
      timeouts: result.timeouts,
      serverErrors,
      unexpected,
      unexpectedExamples,
      memoryMiB: {
        rssStart: samples[0]?.rssMiB,
        rssEnd: samples.at(-1)?.rssMiB,
        rssMax: Math.max(...samples.map((entry) => entry.rssMiB)),
        anonPlateau: plateau,
        anonEnd: end,
        anonGrowthPercent: growthPercent,
      },
      samples,
      shutdownExitCode: exitCode,
    };
    const failed =
      result.errors > 0 ||
      result.timeouts > 0 ||
      serverErrors > 0 ||
      unexpected > 0 ||
      growthPercent > Number(values['max-growth-percent']) ||
      exitCode !== 0;
    if (values.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    } else {
      const { samples: memorySamples, ...headline } = summary;
      process.stdout.write(
        `${JSON.stringify({ ...headline, memorySamples: memorySamples.length }, null, 2)}\n` +
          `${failed ? 'SOAK FAILED' : 'soak passed'}\n`,
      );
    }
    process.exitCode = failed ? 1 : 0;
  } finally {
    if (isRunning(server)) await killGroup(server);
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
