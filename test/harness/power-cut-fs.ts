/**
 * The power-cut file system of the tests (power-cut-fs.py, on Debian's fuse3 and python3-pyfuse3)
 * driven from Node: mount it over a backing directory, ask what it holds, cut the power (drop
 * every unsynced byte and unmount), and a restart "as after a reboot" for LMDB (a fresh boot id).
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./power-cut-fs.py', import.meta.url));
/** Every wait on the file system process is bounded by this. */
const ANSWER_TIMEOUT_MS = 15_000;

/** What the file system holds in memory (written, not yet fsynced), and the syncs it has seen. */
export interface Held {
  files: number;
  bytes: number;
  fsyncs: number;
  dirFsyncs: number;
}

/** A mounted power-cut file system. */
export interface PowerCutFs {
  mountpoint: string;
  backing: string;
  /** What is held now. */
  held(): Promise<Held>;
  /** Drops everything not fsynced, unmounts and waits for the process to exit; what was dropped. */
  cut(): Promise<Held>;
  /** Unmounts without a cut if still mounted, and ends the process (for finally blocks). */
  close(): Promise<void>;
}

/** Why the power-cut file system cannot run here, or undefined when it can. */
export async function powerCutFsMissing(): Promise<string | undefined> {
  try {
    await readFile('/dev/fuse').catch((error: NodeJS.ErrnoException) => {
      // /dev/fuse answers reads without a mount with EPERM/EINVAL; only its absence matters.
      if (error.code === 'ENOENT') throw error;
    });
  } catch {
    return 'there is no /dev/fuse';
  }
  try {
    await run('fusermount3', ['-V']);
  } catch {
    return 'fusermount3 is missing (Debian package fuse3)';
  }
  try {
    await run(PYTHON, ['-c', 'import pyfuse3, trio']);
  } catch {
    return `${PYTHON} cannot import pyfuse3 (Debian package python3-pyfuse3)`;
  }
  try {
    await run('unshare', ['--mount', '--uts', '--propagation', 'private', 'true']);
  } catch (error) {
    return `cannot make a private mount namespace (unshare: ${(error as Error).message})`;
  }
  return undefined;
}

/** Whether `mountpoint` is a mount point now (this process's mount namespace). */
export async function isMounted(mountpoint: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  const target = path.resolve(mountpoint);
  // Field 5 is the mount point, with spaces and the like escaped as octal.
  return mounts
    .split('\n')
    .some(
      (line) =>
        line
          .split(' ')[4]
          ?.replace(/\\([0-7]{3})/g, (_, code: string) => String.fromCharCode(parseInt(code, 8))) === target,
    );
}

/** Unmounts `mountpoint` if something is mounted there (lazily when it is busy). */
export async function unmountIfMounted(mountpoint: string): Promise<void> {
  if (!(await isMounted(mountpoint))) return;
  try {
    await run('fusermount3', ['-u', mountpoint]);
  } catch {
    await run('fusermount3', ['-u', '-z', mountpoint]).catch(() => {});
  }
}

/** Mounts the power-cut file system of `backing` at `mountpoint` and resolves once it serves. */
export async function mountPowerCutFs(backing: string, mountpoint: string): Promise<PowerCutFs> {
  const child = spawn(PYTHON, [SCRIPT, backing, mountpoint], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => resolve(`exited (${code ?? signal})`)),
  );
  child.once('error', (error) => (stderr += String(error)));
  const lines = createInterface({ input: child.stdout });
  const next = nextLine(lines);
  const failure = (what: string) => new Error(`power-cut-fs ${what}\n${stderr}`);
  const answer = async (command: string | undefined): Promise<Record<string, unknown>> => {
    if (command !== undefined) child.stdin.write(`${command}\n`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(failure(`did not answer ${command ?? 'its mount'} within ${ANSWER_TIMEOUT_MS} ms`)),
        ANSWER_TIMEOUT_MS,
      );
    });
    try {
      return await Promise.race([
        next(),
        exited.then((how) => Promise.reject(failure(`${how} before answering ${command ?? 'its mount'}`))),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  const stopProcess = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), ANSWER_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    await unmountIfMounted(mountpoint);
  };
  try {
    await answer(undefined);
  } catch (error) {
    await stopProcess();
    throw error;
  }
  return {
    mountpoint,
    backing,
    async held() {
      return (await answer('stats')) as unknown as Held;
    },
    async cut() {
      const reply = await answer('cut');
      await stopProcess();
      if (await isMounted(mountpoint)) throw failure('left its mount behind');
      return reply.dropped as Held;
    },
    close: stopProcess,
  };
}

/** Resolves lines one at a time, in order. */
function nextLine(lines: Interface): () => Promise<Record<string, unknown>> {
  const queued: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => {
    const waiter = waiting.shift();
    if (waiter) waiter(line);
    else queued.push(line);
  });
  return () => {
    const line = queued.shift();
    const parse = (text: string) => JSON.parse(text) as Record<string, unknown>;
    return line === undefined
      ? new Promise((resolve) => waiting.push((text) => resolve(parse(text))))
      : Promise.resolve(parse(line));
  };
}

/**
 * The command that starts digestd as after a reboot, for LMDB: in a private mount and UTS
 * namespace whose /proc/sys/kernel/random/boot_id reads a fresh id. LMDB (lmdb-js) trusts its
 * newest commit only under the boot id it recorded, and reads the id only from procfs, so the
 * namespace's NIS domain name, a procfs file it may set, is bind-mounted over it. Ends with `exec`,
 * so the pid is node's.
 */
export function afterRebootWrapper(bootId = randomUUID()): string[] {
  return [
    'unshare',
    '--mount',
    '--uts',
    '--propagation',
    'private',
    '/bin/sh',
    '-c',
    'domainname "$0" && mount --bind /proc/sys/kernel/domainname /proc/sys/kernel/random/boot_id && exec "$@"',
    bootId,
  ];
}
