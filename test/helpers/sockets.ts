import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import type { RunningServer } from './server.js';

/** Opens a TLS connection to a test server, trusting its generated certificate. */
export function openTls(server: RunningServer): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connectTls(
      { host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' },
      () => resolve(socket),
    );
    socket.once('error', reject);
  });
}

/** Opens a plain TCP connection (no TLS handshake) to a test server. */
export function openTcp(server: RunningServer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp({ host: '127.0.0.1', port: server.port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** What a connection received until it closed. */
export interface Received {
  bytes: Buffer;
  text: string;
  /** A socket error (for example ECONNRESET) that ended it, if any. */
  error: NodeJS.ErrnoException | undefined;
}

/** Collects everything a socket receives and resolves once it is closed (by either side). */
export function receiveUntilClose(socket: Socket): Promise<Received> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (cause: NodeJS.ErrnoException) => (error = cause));
    socket.once('close', () => {
      const bytes = Buffer.concat(chunks);
      resolve({ bytes, text: bytes.toString('latin1'), error });
    });
  });
}

/** One HTTP/1.x response parsed from raw bytes. */
export interface RawResponse {
  version: string;
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Splits a byte stream into HTTP/1.x responses (Content-Length framed, as digestd sends them).
 * Throws on anything that is not a well-formed sequence of responses.
 */
export function parseResponses(raw: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let offset = 0;
  while (offset < raw.length) {
    const headerEnd = raw.indexOf('\r\n\r\n', offset, 'latin1');
    if (headerEnd < 0)
      throw new Error(`incomplete response head: ${raw.subarray(offset).toString('latin1')}`);
    const [statusLine = '', ...headerLines] = raw
      .subarray(offset, headerEnd)
      .toString('latin1')
      .split('\r\n');
    const match = /^(HTTP\/1\.[01]) (\d{3}) /.exec(statusLine);
    if (!match) throw new Error(`not a status line: ${statusLine}`);
    const headers: Record<string, string> = {};
    for (const line of headerLines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    const bodyStart = headerEnd + 4;
    if (bodyStart + length > raw.length) throw new Error('truncated response body');
    responses.push({
      version: match[1]!,
      status: Number(match[2]),
      headers,
      body: raw.subarray(bodyStart, bodyStart + length).toString('utf8'),
    });
    offset = bodyStart + length;
  }
  return responses;
}

/** Writes `chunks` one at a time with a pause between them until the socket closes. */
export async function trickle(socket: Socket, chunks: readonly string[], pauseMs: number): Promise<void> {
  for (const chunk of chunks) {
    if (socket.destroyed || !socket.writable) return;
    socket.write(chunk);
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}

/** Resolves once `condition` holds, checking every `everyMs`; rejects after `attempts` checks. */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  { attempts = 400, everyMs = 50 } = {},
): Promise<void> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  throw new Error(`condition still false after ${attempts} checks`);
}
