/**
 * Crash consistency: writers POST unique messages at full speed over many connections and record
 * every digest answered 201; the whole server process tree is SIGKILLed at a random moment; after
 * a restart on the same data directory every recorded digest must return its message.
 *
 *   npm run build && node --import tsx scripts/crash-consistency.ts --rounds 20
 *   node --import tsx scripts/crash-consistency.ts --rounds 3 -- --max-connections 500   (extra serve flags)
 *
 * Exits 0 when nothing acknowledged was lost, 1 otherwise. --json prints one JSON summary line.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  countLost,
  type KillOptions,
  isRunning,
  killGroup,
  startServer,
  stopServer,
  writeUntilKilled,
} from './lib/traffic.js';

/** Options of one crash-consistency run. */
export interface CrashOptions extends KillOptions {
  /** Kill-and-restart rounds. @default 3 */
  rounds: number;
  /** Data directory; a fresh temporary one (removed afterwards) by default. */
  dataDir?: string | undefined;
  /** Extra `digestd serve` flags, e.g. ['--workers', '2']. */
  serverArgs: string[];
  /** Progress lines on stderr. */
  log: (line: string) => void;
}

/** What one round measured. */
export interface RoundResult {
  round: number;
  acknowledged: number;
  /** Requests that failed because of the kill (sent, never answered): allowed to be lost. */
  interrupted: number;
  /** Acknowledged messages missing or different after the restart: must be 0. */
  lost: number;
  killedAfterMs: number;
  /** Processes in the killed group (the server, plus its workers when it has any). */
  processesKilled: number;
}

/** The figures of a whole run. */
export interface CrashSummary {
  rounds: RoundResult[];
  acknowledged: number;
  lost: number;
  /** Everything acknowledged in every round, checked again at the end. */
  finalCheckLost: number;
  /** Replies that carried a digest other than the SHA-256 of the message sent. */
  wrongDigests: number;
}

/** Runs the kill-and-restart rounds and returns the figures. */
export async function runCrashConsistency(options: CrashOptions): Promise<CrashSummary> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'digestd-crash-')));
  const everything = new Map<string, string>();
  const rounds: RoundResult[] = [];
  let wrongDigests = 0;
  let server = await startServer(dataDir, options.serverArgs);
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const written = await writeUntilKilled(server, round, options);
      wrongDigests += written.wrongDigests;
      server = await startServer(dataDir, options.serverArgs);
      const lost = await countLost(server, written.acknowledged);
      for (const [digest, message] of written.acknowledged) everything.set(digest, message);
      const result: RoundResult = {
        round,
        acknowledged: written.acknowledged.size,
        interrupted: written.interrupted,
        lost,
        killedAfterMs: written.killedAfterMs,
        processesKilled: written.processesKilled,
      };
      rounds.push(result);
      options.log(
        `round ${round}/${options.rounds}: killed ${result.processesKilled} process(es) after ${result.killedAfterMs} ms; ` +
          `${result.acknowledged} acknowledged, ${result.interrupted} interrupted, ${result.lost} lost`,
      );
    }
    const finalCheckLost = await countLost(server, everything);
    await stopServer(server);
    return {
      rounds,
      acknowledged: everything.size,
      lost: rounds.reduce((sum, round) => sum + round.lost, 0),
      finalCheckLost,
      wrongDigests,
    };
  } finally {
    if (isRunning(server)) await killGroup(server);
    if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '32' },
      'min-acknowledged': { type: 'string', default: '100' },
      'kill-window-ms': { type: 'string', default: '1500' },
      'data-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  const started = Date.now();
  const summary = await runCrashConsistency({
    rounds: Number(values.rounds),
    connections: Number(values.connections),
    minAcknowledged: Number(values['min-acknowledged']),
    killWindowMs: Number(values['kill-window-ms']),
    dataDir: values['data-dir'],
    serverArgs: positionals,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...summary, seconds: Number(seconds) })}\n`);
  } else {
    process.stdout.write(
      `${summary.rounds.length} rounds in ${seconds} s: ${summary.acknowledged} messages acknowledged, ` +
        `${summary.lost} lost after their kill, ${summary.finalCheckLost} lost at the final check, ` +
        `${summary.wrongDigests} wrong digests\n`,
    );
  }
  process.exitCode = summary.lost === 0 && summary.finalCheckLost === 0 && summary.wrongDigests === 0 ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
