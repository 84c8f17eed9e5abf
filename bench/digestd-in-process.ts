/**
 * digestd's request path in a single process, for `npm run bench:instructions`: the server each
 * `digestd serve` worker builds (src/server.ts: the same routes, hooks, access log, metrics and
 * LMDB store, over TLS with the certificate in <data-dir>/tls), without the supervisor. valgrind
 * cannot reserve LMDB's default 1 TiB of address space, so the store maps 1 GiB here. Log lines
 * are batched as a worker batches them for its primary (src/log/ipc.ts), and each batch is written
 * to stdout where a worker would send it. Load shedding is off, since valgrind's slowness would trip it.
 * Usage: --port P --data-dir DIR
 */
import { write } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.js';
import { loadTlsMaterial } from '../src/http/tls/material.js';
import { IpcLogDestination } from '../src/log/ipc.js';
import { createLogger } from '../src/log/logger.js';
import { listen } from '../src/http/listen.js';
import { createServer } from '../src/server.js';
import { createLmdbStore } from '../src/store/lmdb.js';

const { values } = parseArgs({ options: { port: { type: 'string' }, 'data-dir': { type: 'string' } } });
const dataDir = values['data-dir'] ?? '';
// Under valgrind everything runs many times slower by design: load shedding is off (its check would
// answer 503), and the store and connection deadlines are long, so a slow fsync or a stalled
// handshake is counted rather than answered 503 or cut off.
const config = loadConfig([
  '--data-dir',
  dataDir,
  '--host',
  '127.0.0.1',
  '--port',
  values.port ?? '',
  '--max-event-loop-delay',
  '0',
  '--store-timeout',
  '600000',
  '--headers-timeout',
  '3600000',
  '--request-timeout',
  '3600000',
]);
const tls = await loadTlsMaterial({ dataDir });
const { app } = await createServer(config, {
  logger: createLogger({
    level: config.log.level,
    destination: new IpcLogDestination({ send: (message, callback) => write(1, message.lines, callback) }),
  }),
  https: { cert: tls.cert, key: tls.key },
  store: await createLmdbStore({
    path: path.join(dataDir, 'store'),
    mapSize: 2 ** 30,
    timeoutMs: config.store.timeoutMs,
  }),
});
// As a worker binds (src/http/listen.ts); Fastify's listen() would write into the frozen settings.
await listen(app, config.listen);
