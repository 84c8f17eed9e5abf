import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

/** A reply read whole. */
export interface SimpleResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json<T = unknown>(): T;
}

/** Options for request(). */
export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** CA certificate to trust (the server's generated one). */
  ca?: string | undefined;
  /** Server name for TLS verification. @default the URL's host */
  servername?: string;
  agent?: import('node:http').Agent | false;
  /** Fail the request when no reply came within this many ms. @default 30000 */
  timeoutMs?: number;
}

/** One HTTP(S) request that verifies the server certificate against `ca`. */
export function request(url: string, options: RequestOptions = {}): Promise<SimpleResponse> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = send(
      target,
      {
        method: options.method ?? 'GET',
        headers: options.headers,
        ca: options.ca,
        servername: options.servername,
        agent: options.agent,
      },
      (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
        incoming.on('error', reject);
        incoming.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: incoming.statusCode ?? 0,
            headers: incoming.headers,
            body,
            json: <T>() => JSON.parse(body) as T,
          });
        });
      },
    );
    outgoing.setTimeout(options.timeoutMs ?? 30_000, () =>
      outgoing.destroy(new Error(`no reply within ${options.timeoutMs ?? 30_000} ms`)),
    );
    outgoing.on('error', reject);
    outgoing.end(options.body);
  });
}

/** POSTs {"message": message} as JSON to a digestd process. */
export function postMessage(
  server: { url: string; ca: string | undefined },
  message: string,
  extra: RequestOptions = {},
) {
  return request(`${server.url}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message }),
    ca: server.ca,
    ...extra,
  });
}
