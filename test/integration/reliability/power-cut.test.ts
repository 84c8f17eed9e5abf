import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { runPowerCut } from '../../../scripts/power-cut.js';
import { writeFileDurably } from '../../../src/durable-file.js';
import { serviceSkip } from '../../helpers/services.js';
import {
  afterRebootWrapper,
  isMounted,
  mountPowerCutFs,
  powerCutFsMissing,
} from '../../harness/power-cut-fs.js';

const run = promisify(execFile);
const HOW_TO_ENABLE = 'run as root with /dev/fuse and apt-get install fuse3 python3-pyfuse3';

async function fuseSkip(): Promise<string | undefined> {
  return serviceSkip(
    'the power-cut file system',
    async () => {
      const missing = await powerCutFsMissing();
      if (missing !== undefined) throw new Error(missing);
    },
    HOW_TO_ENABLE,
  );
}

/** Mounts a fresh power-cut file system for `body`, always unmounted and removed afterwards. */
async function withMount(body: (paths: { backing: string; mountpoint: string }) => Promise<void>) {
  const base = await mkdtemp(path.join(tmpdir(), 'digestd-power-cut-fs-'));
  const backing = path.join(base, 'disk');
  const mountpoint = path.join(base, 'mnt');
  await mkdir(backing);
  await mkdir(mountpoint);
  try {
    await body({ backing, mountpoint });
  } finally {
    if (!(await isMounted(mountpoint))) await rm(base, { recursive: true, force: true });
  }
}

describe('the power-cut file system', () => {
  it('drops what was not fsynced at a cut: a file renamed unsynced is empty, a durable one whole', async (t) => {
    const skip = await fuseSkip();
    if (skip) return t.skip(skip);
    await withMount(async ({ backing, mountpoint }) => {
      const fs = await mountPowerCutFs(backing, mountpoint);
      try {
        const unsynced = path.join(mountpoint, 'unsynced.pem');
        await writeFile(`${unsynced}.tmp`, 'not yet on disk\n');
        await rename(`${unsynced}.tmp`, unsynced);
        await writeFileDurably(path.join(mountpoint, 'durable.pem'), 'on disk\n');
        // Served from memory before the cut, through read() and through a memory map (LMDB reads so).
        assert.equal(await readFile(unsynced, 'utf8'), 'not yet on disk\n');
        const { stdout } = await run('/usr/bin/python3', [
          '-c',
          'import mmap,sys; f=open(sys.argv[1],"rb"); print(mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)[:].decode(), end="")',
          unsynced,
        ]);
        assert.equal(stdout, 'not yet on disk\n');
        const held = await fs.held();
        assert.equal(held.files, 1);
        assert.ok(held.dirFsyncs >= 1, 'writeFileDurably fsyncs the directory');
        const dropped = await fs.cut();
        assert.equal(dropped.files, 1);
      } finally {
        await fs.close();
      }
      assert.equal(await readFile(path.join(backing, 'unsynced.pem'), 'utf8'), '');
      assert.equal(await readFile(path.join(backing, 'durable.pem'), 'utf8'), 'on disk\n');
      // Mounted again, it serves what survived.
      const again = await mountPowerCutFs(backing, mountpoint);
      try {
        assert.equal(await readFile(path.join(mountpoint, 'unsynced.pem'), 'utf8'), '');
        const handle = await open(path.join(mountpoint, 'durable.pem'), 'r+');
        await handle.write('ON', 0);
        await handle.datasync();
        await handle.write('xx', 4);
        await handle.close();
        await again.cut();
      } finally {
        await again.close();
      }
      assert.equal(await readFile(path.join(backing, 'durable.pem'), 'utf8'), 'ON disk\n');
    });
  });

  it('starts a process as after a reboot: a fresh boot id, on procfs where LMDB reads it', async (t) => {
    const skip = await fuseSkip();
    if (skip) return t.skip(skip);
    const script = 'cat /proc/sys/kernel/random/boot_id; stat -f -c %t /proc/sys/kernel/random/boot_id';
    const [command, ...args] = [...afterRebootWrapper(), '/bin/sh', '-c', script];
    const { stdout } = await run(command, args);
    const [bootId, fsType] = stdout.trim().split('\n');
    const own = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    assert.match(bootId!, /^[0-9a-f-]{36}$/);
    assert.notEqual(bootId, own);
    assert.equal(fsType, '9fa0', 'procfs');
    assert.equal((await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim(), own);
  });
});

describe('power cut', () => {
  it(
    'digestd comes back after every cut with the same local CA and loses no acknowledged message (3 cuts)',
    { timeout: 300_000 },
    async (t) => {
      const skip = await fuseSkip();
      if (skip) return t.skip(skip);
      const lines: string[] = [];
      const summary = await runPowerCut({
        rounds: 3,
        connections: 32,
        minAcknowledged: 50,
        killWindowMs: 1500,
        ackBeforeSync: false,
        serverArgs: [],
        log: (line) => lines.push(line),
      });
      const report = lines.join('\n');
      assert.equal(summary.failedRestarts, 0, report);
      assert.equal(summary.caReplaced, 0, report);
      assert.equal(summary.rounds.length, 3, report);
      for (const round of summary.rounds) {
        assert.ok(round.acknowledged >= 50, report);
        assert.equal(round.lost, 0, report);
      }
      // Something written was held and dropped at each cut (at least LMDB's lock file), so a loss could show.
      assert.ok(
        summary.rounds.every((round) => round.dropped.bytes > 0),
        report,
      );
      assert.equal(summary.finalCheckLost, 0, report);
      assert.equal(summary.wrongDigests, 0, report);
    },
  );

  it(
    'catches a store that acknowledges before the fsync: the control loses messages',
    { timeout: 180_000 },
    async (t) => {
      const skip = await fuseSkip();
      if (skip) return t.skip(skip);
      const lines: string[] = [];
      const summary = await runPowerCut({
        rounds: 1,
        connections: 32,
        minAcknowledged: 50,
        killWindowMs: 1000,
        ackBeforeSync: true,
        serverArgs: [],
        log: (line) => lines.push(line),
      });
      assert.equal(summary.failedRestarts, 0, lines.join('\n'));
      assert.ok(summary.lost > 0, lines.join('\n'));
    },
  );
});
