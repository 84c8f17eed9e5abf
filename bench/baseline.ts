/**
 * The bare baseline digestd is measured against: node:https, messages in a Map, no logging,
 * validation or durability. `--seed FILE` preloads a JSON array of messages; `--workers N` forks
 * N processes (node:cluster), each with its own Map seeded the same way.
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { parseArgs } from 'node:util';
import { sha256Hex } from '../test/harness/sha256.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    seed: { type: 'string' },
    workers: { type: 'string', default: '1' },
  },
});

if (cluster.isPrimary && Number(values.workers) > 1) {
  for (let index = 0; index < Number(values.workers); index++) cluster.fork();
} else {
  const messages = new Map<string, string>();
  const seed = values.seed ? (JSON.parse(readFileSync(values.seed, 'utf8')) as string[]) : [];
  for (const message of seed) messages.set(sha256Hex(message), message);
  const json = { 'content-type': 'application/json' };
  createServer(
    { cert: readFileSync(values.cert ?? ''), key: readFileSync(values.key ?? '') },
    (request, response) => {
      if (request.method === 'POST') {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => {
          const { message } = JSON.parse(Buffer.concat(chunks).toString()) as { message: string };
          const digest = sha256Hex(message);
          messages.set(digest, message);
          response.writeHead(201, json).end(JSON.stringify({ digest }));
        });
        return;
      }
      const message = messages.get(request.url?.slice('/messages/'.length) ?? '');
      if (message === undefined)
        response.writeHead(404, json).end('{"err_msg":"Message not found","code":"MESSAGE_NOT_FOUND"}');
      else response.writeHead(200, json).end(JSON.stringify({ message }));
    },
  ).listen(Number(values.port), '127.0.0.1');
}
