import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePort } from './services.js';

const run = promisify(execFile);

// A failed assertion must not leave Redis servers behind.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A redis-server process started by a test, on 127.0.0.1. */
export interface RedisServerProcess {
  port: number;
  directory: string;
  /** Runs redis-cli against this server and returns its output. */
  cli(...args: string[]): Promise<string>;
  /** Kills the process (SIGKILL by default: a crash, not a shutdown). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and directory (after kill). */
  restart(): Promise<void>;
  /** Whether the process runs. */
  readonly alive: boolean;
}

/** Options for startRedisServer. */
export interface RedisServerOptions {
  /** Working directory for its data (created). */
  directory: string;
  /** Port; a free one by default. */
  port?: number;
  /** Extra `--name value` arguments, e.g. ['--cluster-enabled', 'yes']. */
  args?: string[];
}

/**
 * Starts redis-server in the foreground with AOF (appendfsync always, so a restart keeps every
 * acknowledged write) and resolves once it answers PING.
 */
export async function startRedisServer(options: RedisServerOptions): Promise<RedisServerProcess> {
  const port = options.port ?? (await freePort());
  await mkdir(options.directory, { recursive: true });
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    options.directory,
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'always',
    '--protected-mode',
    'no',
    '--logfile',
    path.join(options.directory, 'redis.log'),
    ...(options.args ?? []),
  ];
  let child: ChildProcess | undefined;
  const cli = async (...command: string[]) =>
    (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...command])).stdout;
  const launch = async () => {
    const started = spawn('redis-server', args, { stdio: 'ignore' });
    running.add(started);
    started.once('exit', () => running.delete(started));
    child = started;
    for (let attempt = 0; ; attempt += 1) {
      if (started.exitCode !== null) throw new Error(`redis-server on port ${port} exited at start`);
      try {
        if ((await cli('ping')).trim() === 'PONG') return;
      } catch {
        // not listening yet
      }
      if (attempt > 200) throw new Error(`redis-server on port ${port} did not answer PING`);
      await sleep(50);
    }
  };
  await launch();
  return {
    port,
    directory: options.directory,
    cli,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      const current = child;
      if (current === undefined || current.exitCode !== null || current.signalCode !== null) return;
      const exited = new Promise((resolve) => current.once('exit', resolve));
      current.kill(signal);
      await exited;
    },
    restart: launch,
    get alive() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
  };
}
