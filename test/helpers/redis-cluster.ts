import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { startRedisServer, type RedisServerProcess } from './redis-server.js';
import { freePort } from './services.js';

const run = promisify(execFile);

/** A Redis Cluster of real redis-server processes in a temporary directory. */
export interface RedisCluster {
  nodes: RedisServerProcess[];
  /** `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,...` */
  url: string;
  /** The nodes that are masters now (asks the cluster). */
  masters(): Promise<RedisServerProcess[]>;
  /** Resolves once every slot is served, every node agrees the cluster is ok and each master has `replicas` replicas online. */
  waitHealthy(replicasPerMaster?: number, timeoutMs?: number): Promise<void>;
  /** Kills every node and removes the directory. */
  stop(): Promise<void>;
}

/**
 * Starts `masters` masters with `replicasPerMaster` replicas each (3 and 1 by default) on free ports
 * with `cluster-enabled yes`, joins them with `redis-cli --cluster create`, and waits until healthy.
 */
export async function startRedisCluster(masters = 3, replicasPerMaster = 1): Promise<RedisCluster> {
  const directory = await mkdtemp(path.join(tmpdir(), 'digestd-redis-cluster-'));
  const nodes: RedisServerProcess[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.kill()));
    await rm(directory, { recursive: true, force: true });
  };
  try {
    for (let index = 0; index < masters * (1 + replicasPerMaster); index += 1) {
      const busPort = await freePort();
      nodes.push(
        await startRedisServer({
          directory: path.join(directory, `node-${index}`),
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            // Short enough for a quick failover in tests, long enough that a busy shared machine
            // does not fail nodes over by itself.
            '--cluster-node-timeout',
            '3000',
            '--cluster-port',
            String(busPort),
            // Keep serving the slots that are still covered while one shard fails over.
            '--cluster-require-full-coverage',
            'no',
          ],
        }),
      );
    }
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((node) => `127.0.0.1:${node.port}`),
      '--cluster-replicas',
      String(replicasPerMaster),
      '--cluster-yes',
    ]);
    const cluster: RedisCluster = {
      nodes,
      url: `redis-cluster://${nodes.map((node) => `127.0.0.1:${node.port}`).join(',')}`,
      async masters() {
        const found: RedisServerProcess[] = [];
        for (const node of nodes) {
          if (!node.alive) continue;
          const role = await node.cli('role').catch(() => '');
          if (role.startsWith('master')) found.push(node);
        }
        return found;
      },
      async waitHealthy(replicas = replicasPerMaster, timeoutMs = 60_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          if (await healthy(nodes, masters, replicas)) return;
          if (Date.now() > deadline) throw new Error('the Redis Cluster did not become healthy');
          await sleep(200);
        }
      },
      stop,
    };
    await cluster.waitHealthy();
    return cluster;
  } catch (error) {
    await stop();
    throw error;
  }
}

async function healthy(nodes: RedisServerProcess[], masters: number, replicas: number): Promise<boolean> {
  let masterCount = 0;
  for (const node of nodes) {
    if (!node.alive) continue;
    try {
      const info = await node.cli('cluster', 'info');
      if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info)) return false;
      // Every node must list each master's replicas in CLUSTER SLOTS, which is what a client reads
      // (from any node): a replica that node has not yet seen in sync is left out, and digestd
      // refuses that shard's writes.
      const ranges = JSON.parse(await node.cli('--json', 'cluster', 'slots')) as unknown[][];
      if (replicas > 0 && ranges.some((range) => range.length - 3 < replicas)) return false;
      const replication = await node.cli('info', 'replication');
      if (/role:master/.test(replication)) {
        masterCount += 1;
        // A master whose replica is attached and in sync reports it as online.
        const online = (replication.match(/^slave\d+:.*state=online/gm) ?? []).length;
        if (online < replicas) return false;
      }
    } catch {
      return false;
    }
  }
  return masterCount === masters;
}
