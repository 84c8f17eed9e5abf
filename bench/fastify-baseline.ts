/**
 * A bare Fastify server for `npm run bench:instructions`: bench/baseline.ts's Map and answers, on
 * Fastify with no logging, schemas, validation or durability, so that what the framework itself
 * costs shows apart from what digestd adds. Usage: --port P --cert FILE --key FILE
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fastify } from 'fastify';
import { sha256Hex } from '../test/harness/sha256.js';

const { values } = parseArgs({
  options: { port: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' } },
});
const messages = new Map<string, string>();
const app = fastify({
  https: { cert: readFileSync(values.cert ?? ''), key: readFileSync(values.key ?? '') },
});
app.post<{ Body: { message: string } }>('/messages', (request, reply) => {
  const digest = sha256Hex(request.body.message);
  messages.set(digest, request.body.message);
  return reply.code(201).send({ digest });
});
app.get<{ Params: { digest: string } }>('/messages/:digest', (request, reply) => {
  const message = messages.get(request.params.digest);
  if (message === undefined)
    return reply.code(404).send({ err_msg: 'Message not found', code: 'MESSAGE_NOT_FOUND' });
  return reply.send({ message });
});
await app.listen({ port: Number(values.port), host: '127.0.0.1' });
