import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { temporaryDirectory } from '../../helpers/server.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const run = promisify(execFile);
const valgrindInstalled = spawnSync('valgrind', ['--version']).error === undefined;

interface InstructionsJson {
  results: {
    server: string;
    scenario: string;
    requests: number;
    runs: number[];
    instructionsPerRequest: number;
  }[];
}

describe('npm run bench:instructions', () => {
  it(
    'counts the instructions per request of the baseline, bare Fastify and digestd under callgrind',
    { skip: !valgrindInstalled && 'valgrind is not installed', timeout: 600_000 },
    async () => {
      const out = await temporaryDirectory('digestd-instructions-test-');
      try {
        const { stdout } = await run(
          process.execPath,
          [
            '--import',
            'tsx',
            'bench/instructions.ts',
            '--requests',
            '100',
            '--runs',
            '2',
            '--warmup',
            '100',
            '--scenarios',
            'get-miss,post-new',
            '--servers',
            'baseline,fastify,digestd',
            '--out',
            out,
          ],
          { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
        );
        const [file] = (await readdir(out)).filter((name) => name.startsWith('instructions-'));
        assert.ok(file, 'a JSON file was written');
        const json = JSON.parse(await readFile(path.join(out, file), 'utf8')) as InstructionsJson;
        assert.deepEqual(
          json.results.map((result) => `${result.server} ${result.scenario} ${result.requests}`),
          [
            'baseline get-miss 100',
            'baseline post-new 100',
            'fastify get-miss 100',
            'fastify post-new 100',
            'digestd get-miss 100',
            'digestd post-new 100',
          ],
        );
        // Answering one request over TLS takes tens of thousands of instructions at the very least.
        for (const result of json.results) {
          assert.equal(result.runs.length, 2);
          assert.ok(Math.min(...result.runs) > 20_000, JSON.stringify(result));
          assert.ok(result.runs.includes(result.instructionsPerRequest), 'the median is one of the runs');
        }
        for (const scenario of ['get-miss', 'post-new']) {
          assert.match(
            stdout,
            new RegExp(
              `\\| ${scenario} \\| [\\d,]+ \\| [\\d,]+ \\| [\\d,]+ \\| \\d+\\.\\d\\dx \\| \\d+\\.\\d\\dx \\|`,
            ),
          );
        }
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    },
  );
});
