/**
 * Sampling a running process tree through Linux /proc: which processes it has, their memory and
 * their CPU time. The tree (a digestd primary and its workers) is found from the children lists,
 * so it needs no process group.
 */
import { readFile } from 'node:fs/promises';

/** `pid` and all its descendants (empty once `pid` has exited). */
export async function processTree(pid: number): Promise<number[]> {
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => undefined);
  if (children === undefined) return [];
  const direct = children.split(' ').filter(Boolean).map(Number);
  const nested = await Promise.all(direct.map(processTree));
  return [pid, ...nested.flat()];
}

/** Memory of a process tree at one moment. */
export interface TreeMemory {
  /** Resident set, summed over the tree (includes file-backed pages such as LMDB's map). */
  rssBytes: number;
  /** Anonymous resident memory (heap, stacks, buffers; excludes file-backed pages). */
  rssAnonBytes: number;
  /** The pids that were sampled. */
  pids: number[];
}

function statusField(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Reads /proc/<pid>/status of every process in the tree of `rootPid`. */
export async function treeMemory(rootPid: number): Promise<TreeMemory> {
  const pids = await processTree(rootPid);
  let rssBytes = 0;
  let rssAnonBytes = 0;
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    rssBytes += statusField(status, 'VmRSS');
    rssAnonBytes += statusField(status, 'RssAnon');
  }
  return { rssBytes, rssAnonBytes, pids };
}

/** CPU time in microseconds, split as the kernel accounts it. */
export interface CpuTime {
  user: number;
  /** In the kernel: system calls, and on loopback also the TCP work of delivering to the client. */
  system: number;
}

/**
 * CPU time used so far by a process tree, from /proc/<pid>/stat. Unlike requests per second, CPU
 * per request barely moves when other programs compete for the machine, so it is the steadier
 * figure for before/after comparisons.
 */
export async function treeCpuTime(rootPid: number): Promise<CpuTime> {
  const microsPerTick = 1e6 / 100; // USER_HZ on Linux
  const total: CpuTime = { user: 0, system: 0 };
  for (const pid of await processTree(rootPid)) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total.user += Number(fields[11] ?? 0) * microsPerTick;
    total.system += Number(fields[12] ?? 0) * microsPerTick;
  }
  return total;
}
