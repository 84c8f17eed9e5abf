import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../harness/free-port.js';
import { ensureLocalCertificate } from '../../src/http/tls/local-ca.js';

/** Pebble (Let's Encrypt's test CA) with pebble-challtestsrv as its DNS server, on loopback. */
export interface Pebble {
  /** The ACME directory URL. */
  directoryUrl: string;
  /** The CA of Pebble's own HTTPS (for --acme-ca-cert). */
  httpsCaFile: string;
  /** Pebble's issuing root, from its management API, in PEM. */
  root(): Promise<string>;
  stop(): Promise<void>;
}

/** Options of startPebble: the ports Pebble validates on (the server's), and certificate lifetime. */
export interface PebbleOptions {
  /** Where Pebble connects for http-01. */
  httpPort: number;
  /** Where Pebble connects for tls-alpn-01. */
  tlsPort: number;
  /** Lifetime of the certificates it issues, in seconds (Pebble's default is five years). */
  validitySeconds?: number;
}

/** pebble and pebble-challtestsrv are installed (Debian's package pebble). */
export async function pebbleAvailable(): Promise<void> {
  for (const command of ['pebble', 'pebble-challtestsrv']) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(command, ['-h'], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', () => resolve());
    });
  }
}

/**
 * Starts pebble-challtestsrv (DNS: every name is 127.0.0.1, no AAAA) and Pebble without its random
 * validation sleeps and nonce rejections, and waits until the directory answers.
 */
export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const directory = await mkdtemp(path.join(tmpdir(), 'digestd-pebble-'));
  // Pebble's own HTTPS certificate, from a local CA of the test's.
  const https = await ensureLocalCertificate({ dataDir: directory });
  const [acmePort, managementPort, dnsPort, dnsManagementPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const config = path.join(directory, 'pebble-config.json');
  await writeFile(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: https.paths.cert,
        privateKey: https.paths.key,
        httpPort: options.httpPort,
        tlsPort: options.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.validitySeconds === undefined
          ? {}
          : { certificateValidityPeriod: options.validitySeconds }),
      },
    }),
  );
  const children: ChildProcess[] = [];
  const output: string[] = [];
  const launch = (command: string, args: string[], env: Record<string, string> = {}) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
    children.push(child);
    return child;
  };
  launch('pebble-challtestsrv', [
    '-dns01',
    `127.0.0.1:${dnsPort}`,
    '-management',
    `127.0.0.1:${dnsManagementPort}`,
    '-http01',
    '',
    '-https01',
    '',
    '-tlsalpn01',
    '',
    '-defaultIPv4',
    '127.0.0.1',
    '-defaultIPv6',
    '',
  ]);
  launch('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], {
    PEBBLE_VA_NOSLEEP: '1',
    PEBBLE_WFE_NONCEREJECT: '0',
  });
  const stop = async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
  };
  const get = (url: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const outgoing = request(url, { ca: https.caCert, timeout: 5000 }, (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      });
      outgoing.on('timeout', () => outgoing.destroy(new Error('timeout')));
      outgoing.on('error', reject);
      outgoing.end();
    });
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const answer = await get(directoryUrl).catch(() => undefined);
    if (answer?.status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Pebble did not answer within 20 s:\n${output.join('')}`);
    }
    await sleep(100);
  }
  return {
    directoryUrl,
    httpsCaFile: https.paths.caCert,
    root: async () => (await get(`https://127.0.0.1:${managementPort}/roots/0`)).body,
    stop,
  };
}
