// Loaded into every benchmarked server process with `node --import`: every 250 ms it writes the
// process's memory usage (V8 heap included, which /proc cannot show) to
// $DIGESTD_BENCH_PROBE_DIR/<pid>.json for the harness to read. Plain JavaScript, so the server
// runs without a TypeScript loader.
/* global process, setInterval */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

const directory = process.env.DIGESTD_BENCH_PROBE_DIR;
if (directory) {
  const file = path.join(directory, `${process.pid}.json`);
  let writing = false;
  setInterval(() => {
    if (writing) return;
    writing = true;
    writeFile(file, JSON.stringify({ pid: process.pid, time: Date.now(), ...process.memoryUsage() }))
      .catch(() => undefined)
      .finally(() => (writing = false));
  }, 250).unref();
}
