/**
 * digestd's request path in a single process, for `npm run bench:instructions`: the app that each
 * `digestd serve` worker builds (the same routes, hooks, access log, metrics and LMDB store, over
 * TLS with the certificate in <data-dir>/tls), without the supervisor. valgrind cannot reserve
 * LMDB's default 1 TiB of address space, so the store maps 1 GiB here. Log lines are batched as a
 * worker batches them for its primary (src/log/ipc.ts), and each batch is written to stdout where
 * a worker would send it.
 * Usage: --port P --data-dir DIR
 */
import { write } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/http/app.js';
import { connectionOptionsFrom } from '../src/http/connection.js';
import { httpSettingsFromConfig } from '../src/http/options.js';
import { loadTlsMaterial } from '../src/http/tls/material.js';
import { IpcLogDestination } from '../src/log/ipc.js';
import { createLogger } from '../src/log/logger.js';
import { localMetricsText } from '../src/metrics.js';
import { LmdbStore } from '../src/store/lmdb.js';

const { values } = parseArgs({ options: { port: { type: 'string' }, 'data-dir': { type: 'string' } } });
const dataDir = values['data-dir'] ?? '';
const config = loadConfig(['--data-dir', dataDir, '--host', '127.0.0.1', '--port', values.port ?? '']);
const store = await LmdbStore.open({ path: path.join(dataDir, 'store'), mapSize: 2 ** 30 });
const tls = await loadTlsMaterial({ dataDir });
const app = buildApp({
  store,
  logger: createLogger({
    level: config.logLevel,
    destination: new IpcLogDestination({ send: (message, callback) => write(1, message.lines, callback) }),
  }),
  ...(await httpSettingsFromConfig(config)),
  https: { cert: tls.cert, key: tls.key },
  connection: connectionOptionsFrom(config),
  metrics: { collect: localMetricsText },
});
await app.listen({ port: config.port, host: config.host });
