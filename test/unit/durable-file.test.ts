import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { removeFileDurably, writeFileDurably } from '../../src/durable-file.js';

async function freshDirectory(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'digestd-durable-'));
}

describe('writeFileDurably', () => {
  it('writes the whole content with the given mode, whatever the umask, and leaves no temporary file', async () => {
    const directory = await freshDirectory();
    const file = path.join(directory, 'key.pem');
    const umask = process.umask(0o077);
    try {
      await writeFileDurably(file, 'secret\n', 0o600);
      await writeFileDurably(path.join(directory, 'cert.pem'), Buffer.from('public\n'), 0o644);
    } finally {
      process.umask(umask);
    }
    assert.equal(await readFile(file, 'utf8'), 'secret\n');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(directory, 'cert.pem'))).mode & 0o777, 0o644);
    assert.deepEqual((await readdir(directory)).sort(), ['cert.pem', 'key.pem']);
  });

  it('replaces an existing file as a whole, and concurrent writers each leave one whole version', async () => {
    const directory = await freshDirectory();
    const file = path.join(directory, 'listening.json');
    await writeFile(file, 'old');
    const versions = Array.from({ length: 20 }, (_, index) => `version ${index} `.repeat(1000));
    await Promise.all(versions.map((content) => writeFileDurably(file, content)));
    assert.ok(versions.includes(await readFile(file, 'utf8')));
    assert.deepEqual(await readdir(directory), ['listening.json']);
  });

  it('rejects and removes its temporary file when the rename fails', async () => {
    const directory = await freshDirectory();
    // A non-empty directory where the file should go: the rename fails after the data is written.
    const target = path.join(directory, 'cert.pem');
    await mkdir(target);
    await writeFile(path.join(target, 'inside'), 'x');
    await assert.rejects(writeFileDurably(target, 'content'), { code: 'EISDIR' });
    assert.deepEqual(await readdir(directory), ['cert.pem']);
  });

  it('writes a stream as it comes, and keeps the previous file when the stream fails', async () => {
    const directory = await freshDirectory();
    const file = path.join(directory, 'backup.jsonl');
    const chunks = Array.from({ length: 100 }, (_, index) => `line ${index} ${'x'.repeat(index * 100)}\n`);
    await writeFileDurably(file, Readable.from(chunks), 0o600);
    assert.equal(await readFile(file, 'utf8'), chunks.join(''));
    async function* failing() {
      yield await Promise.resolve('part of a new version\n');
      throw new Error('the source failed');
    }
    await assert.rejects(writeFileDurably(file, failing()), /the source failed/);
    assert.equal(await readFile(file, 'utf8'), chunks.join(''));
    assert.deepEqual(await readdir(directory), ['backup.jsonl']);
  });

  it('rejects when the directory does not exist', async () => {
    const directory = await freshDirectory();
    await assert.rejects(writeFileDurably(path.join(directory, 'missing', 'file'), 'x'), { code: 'ENOENT' });
  });
});

describe('removeFileDurably', () => {
  it('removes a file, and is quiet when it is already gone', async () => {
    const directory = await freshDirectory();
    const file = path.join(directory, 'listening.json');
    await writeFile(file, '{}');
    await removeFileDurably(file);
    await removeFileDurably(file);
    assert.deepEqual(await readdir(directory), []);
  });
});
