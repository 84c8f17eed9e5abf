/**
 * Power cut: digestd's data directory lives on the power-cut file system of the tests
 * (test/harness/power-cut-fs.py), which holds every written byte in memory until its file is
 * fsynced. Writers POST unique messages over many connections and record every digest answered
 * 201; the process group is SIGKILLed at a random moment, everything not fsynced is dropped, the
 * file system is mounted again (no page of the old mount survives), and digestd is started as
 * after a reboot (a fresh boot id). It must start and serve with the same local CA (the files it
 * wrote are durable), and every recorded digest must return its message.
 *
 *   npm run power-cut -- --rounds 100
 *   npm run power-cut -- --rounds 3 --control ack-before-sync   (must lose messages)
 *   npm run power-cut -- --rounds 3 -- --workers 2               (extra serve flags)
 *
 * Needs root, /dev/fuse, fuse3 and python3-pyfuse3. Exits 0 when digestd came back after every cut
 * and nothing acknowledged was lost, 1 otherwise. --json prints one JSON summary line.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  afterRebootWrapper,
  isMounted,
  mountPowerCutFs,
  powerCutFsMissing,
  type Held,
  type PowerCutFs,
} from '../test/harness/power-cut-fs.js';
import {
  countLost,
  isRunning,
  killGroup,
  startServer,
  stopServer,
  writeUntilKilled,
  type KillOptions,
  type Server,
} from './lib/traffic.js';

/** The broken control: acknowledges once LMDB has committed, before the fsync. */
const ACK_BEFORE_SYNC = fileURLToPath(
  new URL('../test/harness/ack-before-sync/register.mjs', import.meta.url),
);

/** Options of one power-cut run. */
export interface PowerCutOptions extends KillOptions {
  /** Cuts. @default 3 */
  rounds: number;
  /** Runs digestd with the broken control that acknowledges before the fsync. */
  ackBeforeSync: boolean;
  /** Extra `digestd serve` flags. */
  serverArgs: string[];
  /** Progress lines. */
  log: (line: string) => void;
}

/** What one cut measured. */
export interface PowerCutRound {
  round: number;
  acknowledged: number;
  /** Requests cut off by the kill (sent, never answered): allowed to be lost. */
  interrupted: number;
  /** Writes refused with 503 on a busy machine (not acknowledged). */
  shed: number;
  /** Acknowledged messages missing or different after the restart: must be 0. */
  lost: number;
  killedAfterMs: number;
  processesKilled: number;
  /** What the file system dropped: written, never fsynced. */
  dropped: Held;
  /** Why digestd did not serve again after the cut; undefined when it did. */
  restartFailure: string | undefined;
  /** Whether digestd served from another local CA after the cut (its clients would stop trusting it). */
  caReplaced: boolean;
}

/** The figures of a whole run. */
export interface PowerCutSummary {
  rounds: PowerCutRound[];
  acknowledged: number;
  lost: number;
  /** Everything acknowledged in every round, read again at the end. */
  finalCheckLost: number;
  wrongDigests: number;
  /** Cuts after which digestd did not start and serve (the run stops at the first). */
  failedRestarts: number;
  /** Cuts after which the local CA was another: the one written before was not durable. */
  caReplaced: number;
}

/** Runs the cut-and-restart rounds and returns the figures. */
export async function runPowerCut(options: PowerCutOptions): Promise<PowerCutSummary> {
  const missing = await powerCutFsMissing();
  if (missing !== undefined) throw new Error(`the power-cut file system cannot run here: ${missing}`);
  const base = await mkdtemp(path.join(tmpdir(), 'digestd-power-cut-'));
  const backing = path.join(base, 'disk');
  const mountpoint = path.join(base, 'mnt');
  await mkdir(backing);
  await mkdir(mountpoint);
  const dataDir = path.join(mountpoint, 'data');
  const start = () =>
    startServer(dataDir, options.serverArgs, {
      wrapper: afterRebootWrapper(),
      nodeArgs: options.ackBeforeSync ? ['--import', ACK_BEFORE_SYNC] : [],
    });

  const everything = new Map<string, string>();
  const rounds: PowerCutRound[] = [];
  let wrongDigests = 0;
  let fs: PowerCutFs | undefined;
  let server: Server | undefined;
  let finalCheckLost = 0;
  try {
    fs = await mountPowerCutFs(backing, mountpoint);
    server = await start();
    for (let round = 1; round <= options.rounds; round++) {
      const caBefore = server.digestd.ca;
      const written = await writeUntilKilled(server, round, options);
      wrongDigests += written.wrongDigests;
      server = undefined;
      const dropped = await fs.cut();
      fs = undefined;
      fs = await mountPowerCutFs(backing, mountpoint);
      let restartFailure: string | undefined;
      try {
        server = await start();
      } catch (error) {
        restartFailure = (error as Error).message;
      }
      const lost =
        server === undefined ? written.acknowledged.size : await countLost(server, written.acknowledged);
      for (const [digest, message] of written.acknowledged) everything.set(digest, message);
      const result: PowerCutRound = {
        round,
        acknowledged: written.acknowledged.size,
        interrupted: written.interrupted,
        shed: written.shed,
        lost,
        killedAfterMs: written.killedAfterMs,
        processesKilled: written.processesKilled,
        dropped,
        restartFailure,
        caReplaced: server !== undefined && server.digestd.ca !== caBefore,
      };
      rounds.push(result);
      options.log(
        `cut ${round}/${options.rounds}: killed ${result.processesKilled} process(es) after ${result.killedAfterMs} ms, ` +
          `dropped ${dropped.bytes} unsynced bytes in ${dropped.files} file(s); ` +
          `${result.acknowledged} acknowledged, ${result.interrupted} interrupted, ` +
          `${result.shed} refused (503), ${result.lost} lost` +
          (result.caReplaced ? '; the local CA was replaced' : '') +
          (restartFailure === undefined
            ? ''
            : `; digestd did not come back: ${restartFailure.split('\n').slice(0, 3).join(' | ')}`),
      );
      if (server === undefined) break;
    }
    if (server !== undefined) {
      finalCheckLost = await countLost(server, everything);
      await stopServer(server);
      server = undefined;
    }
  } finally {
    if (server !== undefined && isRunning(server)) await killGroup(server);
    await fs?.close();
    // Never remove through a mount that is still there.
    if (!(await isMounted(mountpoint))) await rm(base, { recursive: true, force: true });
  }
  const failedRestarts = rounds.filter((round) => round.restartFailure !== undefined).length;
  const caReplaced = rounds.filter((round) => round.caReplaced).length;
  return {
    rounds,
    acknowledged: everything.size,
    lost: rounds.reduce((sum, round) => sum + round.lost, 0),
    finalCheckLost,
    wrongDigests,
    failedRestarts,
    caReplaced,
  };
}

async function main() {
  const { values, positionals } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '32' },
      'min-acknowledged': { type: 'string', default: '100' },
      'kill-window-ms': { type: 'string', default: '2000' },
      control: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  if (values.control !== undefined && values.control !== 'ack-before-sync') {
    process.stderr.write(`--control: the only control is ack-before-sync\n`);
    process.exit(2);
  }
  const started = Date.now();
  const summary = await runPowerCut({
    rounds: Number(values.rounds),
    connections: Number(values.connections),
    minAcknowledged: Number(values['min-acknowledged']),
    killWindowMs: Number(values['kill-window-ms']),
    ackBeforeSync: values.control === 'ack-before-sync',
    serverArgs: positionals,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...summary, seconds: Number(seconds) })}\n`);
  } else {
    process.stdout.write(
      `${summary.rounds.length} cuts in ${seconds} s: ${summary.acknowledged} messages acknowledged, ` +
        `${summary.lost} lost after their cut, ${summary.finalCheckLost} lost at the final check, ` +
        `${summary.wrongDigests} wrong digests, ${summary.failedRestarts} failed restarts, ` +
        `${summary.caReplaced} local CAs replaced\n`,
    );
  }
  process.exitCode =
    summary.lost === 0 &&
    summary.finalCheckLost === 0 &&
    summary.wrongDigests === 0 &&
    summary.failedRestarts === 0 &&
    summary.caReplaced === 0
      ? 0
      : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
