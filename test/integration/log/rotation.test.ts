import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rename, stat } from 'node:fs/promises';
import { Agent } from 'node:https';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  postMessage,
  request,
  startServer,
  temporaryDirectory,
  type RunningServer,
} from '../../helpers/server.js';

const run = promisify(execFile);
const LOG_NAME = 'digestd.log';

/** Sends `total` requests over `concurrency` connections, alternating POST and GET; all must succeed. */
async function sendRequests(server: RunningServer, total: number, concurrency: number): Promise<void> {
  const agents = Array.from({ length: concurrency }, () => new Agent({ keepAlive: true, ca: server.ca }));
  let next = 0;
  await Promise.all(
    agents.map(async (agent) => {
      for (let index = next++; index < total; index = next++) {
        const reply =
          index % 2 === 0
            ? await postMessage(server, `rotated ${index}`, { agent })
            : await request(`${server.url}/healthz`, { ca: server.ca, agent });
        assert.equal(reply.status, index % 2 === 0 ? 201 : 200);
      }
      agent.destroy();
    }),
  );
}

/** The log files in `directory`, oldest last, with their parsed lines. */
async function readLogFiles(directory: string) {
  const names = (await readdir(directory)).sort();
  return Promise.all(
    names.map(async (name) => {
      const content = await readFile(path.join(directory, name), 'utf8');
      // Empty when the last write reached the size: the file is rotated right after that write.
      assert.ok(content === '' || content.endsWith('\n'), `${name} ends with a whole line`);
      const lines = (content === '' ? [] : content.slice(0, -1).split('\n')).map((line, index) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          assert.fail(`${name} line ${index + 1} is not JSON: ${line}`);
        }
      });
      return { name, size: (await stat(path.join(directory, name))).size, lines };
    }),
  );
}

describe('log file rotation', () => {
  it('rotates by size under multi-worker load: bounded files, whole JSON lines, no line lost', async () => {
    const directory = await temporaryDirectory('digestd-logs-');
    const maxSize = 8 * 1024;
    const server = await startServer({
      logFile: path.join(directory, LOG_NAME),
      args: ['--workers', '2', '--log-max-size', String(maxSize), '--log-max-files', '100'],
    });
    const total = 400;
    await sendRequests(server, total, 8);
    assert.equal(await server.stop(), 0);

    const files = await readLogFiles(directory);
    const names = files.map((file) => file.name);
    assert.ok(names.includes(LOG_NAME));
    for (const name of names) assert.match(name, /^digestd\.log(\.\d+)?$/);
    assert.ok(files.length >= 5, `rotated into ${files.length} files`);
    assert.ok(files.length <= 100);
    for (const file of files) {
      // A file is rotated once it reaches the size, so it can exceed it by at most the last write
      // (at most an eighth of the size, or one line).
      assert.ok(file.size <= maxSize + maxSize / 8 + 2048, `${file.name} has ${file.size} bytes`);
      if (file.name !== LOG_NAME) assert.ok(file.size >= maxSize, `${file.name} rotated early`);
    }
    const lines = files.flatMap((file) => file.lines);
    const access = lines.filter((line) => line.msg === 'request');
    assert.equal(access.length, total);
    assert.equal(new Set(access.map((line) => line.reqId)).size, total);
    assert.equal(new Set(access.map((line) => line.pid)).size, 2, 'both workers served and logged');
    assert.ok(lines.some((line) => line.msg === 'stopped' && line.pid === server.process.pid));
  });

  it('keeps at most --log-max-files files, deleting the oldest', async () => {
    const directory = await temporaryDirectory('digestd-logs-');
    const server = await startServer({
      logFile: path.join(directory, LOG_NAME),
      args: ['--workers', '2', '--log-max-size', '4KiB', '--log-max-files', '3'],
    });
    await sendRequests(server, 300, 6);
    assert.equal(await server.stop(), 0);
    const files = await readLogFiles(directory);
    assert.deepEqual(
      files.map((file) => file.name),
      [LOG_NAME, `${LOG_NAME}.1`, `${LOG_NAME}.2`],
    );
    // The newest lines survive: the shutdown is in the newest file that has lines.
    const newest = files.find((file) => file.lines.length > 0);
    assert.ok(newest?.lines.some((line) => line.msg === 'stopped'));
    // 300 access lines need far more than 12 KiB: the oldest were deleted.
    const access = files.flatMap((file) => file.lines).filter((line) => line.msg === 'request');
    assert.ok(access.length < 300);
  });

  it('reopens the log file on SIGHUP after it was moved away', async () => {
    const directory = await temporaryDirectory('digestd-logs-');
    const logFile = path.join(directory, LOG_NAME);
    const server = await startServer({ logFile, args: ['--workers', '1'] });
    await sendRequests(server, 10, 2);
    await rename(logFile, path.join(directory, 'moved.log'));
    server.process.kill('SIGHUP');
    await server.waitForLog((line) => line.msg === 'reopened the log file', 10_000);
    await sendRequests(server, 10, 2);
    assert.equal(await server.stop(), 0);
    const current = (await readFile(logFile, 'utf8')).trim().split('\n');
    const moved = (await readFile(path.join(directory, 'moved.log'), 'utf8')).trim().split('\n');
    const accessLines = (lines: string[]) =>
      lines.filter((line) => (JSON.parse(line) as { msg: string }).msg === 'request').length;
    assert.equal(accessLines(moved) + accessLines(current), 20);
    assert.ok(accessLines(current) >= 10, 'lines after the reopen go to the new file');
  });

  it('drops and counts log lines when the disk is full, and keeps answering', async (context) => {
    const mountPoint = await temporaryDirectory('digestd-full-');
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mountPoint]);
    } catch {
      context.skip('needs permission to mount a small tmpfs (root); the disk-full case is not tested here');
      return;
    }
    try {
      await mkdir(path.join(mountPoint, 'logs'));
      const server = await startServer({
        logFile: path.join(mountPoint, 'logs', LOG_NAME),
        args: ['--workers', '2', '--log-max-size', '1MiB'],
      });
      // About 300 bytes an access line: 800 requests need several times the 64 KiB there is.
      await sendRequests(server, 800, 8);
      assert.equal(await server.stop(), 0);
      // The total, on stderr as a JSON line like every other.
      const [total] = server
        .stderr()
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as { msg: string; droppedLines: number; reason: string });
      assert.match(total?.msg ?? '', /^\d+ log lines were dropped$/, server.stderr());
      assert.ok(total!.droppedLines > 0);
      assert.match(total!.reason, /ENOSPC|no space/i);
    } finally {
      await run('umount', [mountPoint]);
    }
  });
});
