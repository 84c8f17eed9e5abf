import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { settingsHelp } from '../../src/config/help.js';
import { loadConfig } from '../../src/config/load.js';
import { settingOf } from '../../src/config/names.js';
import { SCHEMA, type Command, type GroupName, type SettingSpec } from '../../src/config/schema.js';
import { InvalidConfig } from '../../src/errors.js';

const execFileAsync = promisify(execFile);
const mainScript = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** One row of `digestd <command> --help`, its wrapped lines joined. */
interface HelpRow {
  flag: string;
  negated: boolean;
  placeholder: string | undefined;
  text: string;
}

/** The options rows `digestd <command> --help` prints (80 columns: stdout is a pipe). */
async function helpRows(command: Command): Promise<HelpRow[]> {
  const { stdout } = await execFileAsync(process.execPath, [
    '--import',
    'tsx',
    mainScript,
    command,
    '--help',
  ]);
  const options = stdout.slice(stdout.indexOf(':\n', stdout.indexOf('Options')) + 2);
  const rows: string[] = [];
  for (const line of options.split('\n').filter(Boolean)) {
    if (line.startsWith('  --')) rows.push(line);
    else if (rows.length > 0 && /^ {3,}\S/.test(line)) rows[rows.length - 1] += ` ${line.trim()}`;
    else assert.fail(`a --help line that is neither a row nor its continuation: ${line}`);
  }
  return rows.map((row) => {
    const match = /^ {2}--([a-z-]+)(?:(, --no-\1)| (\S+))? +(.*)$/.exec(row);
    assert.ok(match, `a --help row that does not start with a flag: ${row}`);
    return { flag: match[1]!, negated: match[2] !== undefined, placeholder: match[3], text: match[4]! };
  });
}

/** A --help default as the value it stands for: byte sizes written in KiB or MiB are numbers. */
function shownDefault(text: string): string {
  const size = /^(\d+)(KiB|MiB)$/.exec(text);
  if (size === null) return text;
  return String(Number(size[1]) * (size[2] === 'KiB' ? 1024 : 1024 * 1024));
}

/** The schema's settings for a command, read from SCHEMA itself. */
function schemaSettings(command: Command) {
  return Object.entries(SCHEMA).flatMap(([group, { settings }]) =>
    Object.entries(settings as Record<string, SettingSpec>)
      .filter(([, spec]) => (spec.commands ?? ['serve']).includes(command))
      .map(([key, spec]) => ({
        name: `${group}.${key}`,
        spec,
        flag: settingOf(group as GroupName, key as never).flag,
        env: settingOf(group as GroupName, key as never).env,
      })),
  );
}

/** The [flag, env] pairs a subcommand's --help lists, and which of them are switches (--x, --no-x). */
function listed(command: Command): { names: [string, string][]; switches: Set<string> } {
  const names: [string, string][] = [];
  const switches = new Set<string>();
  // Unwrapped: one row a setting.
  for (const line of settingsHelp(command, Number.POSITIVE_INFINITY).split('\n')) {
    const match = /^ {2}(--[a-z-]+)(, --no-[a-z-]+)?\s.*\[env ([A-Z_]+)\]$/.exec(line);
    assert.ok(match, `a --help row without a flag and an environment variable: ${line}`);
    names.push([match[1]!, match[3]!]);
    if (match[2] !== undefined) switches.add(match[1]!);
  }
  return { names, switches };
}

/** What loading gives: the configuration, or its problems with each setting's source left out. */
function outcome(run: () => unknown, sources: readonly string[]): unknown {
  try {
    return { config: run() };
  } catch (error) {
    assert.ok(error instanceof InvalidConfig, String(error));
    return {
      problems: error.problems.map((problem) =>
        sources.reduce((text, source) => text.replaceAll(source, '<setting>'), problem),
      ),
    };
  }
}

describe('setting names', () => {
  for (const command of ['serve', 'migrate', 'verify', 'backup', 'restore', 'remove'] as const) {
    it(`digestd ${command} --help lists every setting of the schema with its flag, default and variable, and nothing else`, async () => {
      const rows = await helpRows(command);
      const settings = schemaSettings(command);
      assert.deepEqual(
        rows.map((row) => row.flag),
        settings.map((setting) => setting.flag),
        "the rows of --help are the schema's settings, in its order",
      );
      for (const [index, setting] of settings.entries()) {
        const row = rows[index]!;
        const { spec } = setting;
        assert.equal(row.negated, spec.kind === 'boolean', `${setting.name}: --no-${setting.flag}`);
        assert.equal(row.placeholder === undefined, spec.kind === 'boolean', `${setting.name}: a value`);
        assert.ok(row.text.startsWith(spec.help), `${setting.name}: its help line, in: ${row.text}`);
        assert.ok(
          row.text.endsWith(` [env ${setting.env}]`),
          `${setting.name}: ${setting.env}, in: ${row.text}`,
        );
        const shown = /\(default: (.*?)\) \[env [A-Z_]+\]$/.exec(row.text)?.[1];
        if (spec.default === undefined) assert.equal(shown, undefined, `${setting.name} has no default`);
        else if (spec.defaultHelp !== undefined) assert.equal(shown, spec.defaultHelp, setting.name);
        else {
          assert.ok(
            shown !== undefined,
            `${setting.name}: its default ${String(spec.default)}, in: ${row.text}`,
          );
          assert.equal(shownDefault(shown), String(spec.default), setting.name);
        }
      }
    });

    it(`${command} reads each environment variable as the flag it pairs with`, () => {
      const { names, switches } = listed(command);
      // What each command requires, so that the setting under test decides the outcome.
      const required: Record<string, string> =
        {
          migrate: { DIGESTD_MIGRATE_FROM: 'lmdb:/from', DIGESTD_MIGRATE_TO: 'lmdb:/to' },
          backup: { DIGESTD_BACKUP_TO: '/backup' },
          restore: { DIGESTD_RESTORE_FROM: '/backup', DIGESTD_RESTORE_TO: 'lmdb:/to' },
          remove: { DIGESTD_REMOVE_FROM: '/digests' },
        }[command as string] ?? {};
      const defaults = outcome(() => loadConfig([], required, command), []);
      for (const [flag, env] of names) {
        const base = Object.fromEntries(Object.entries(required).filter(([name]) => name !== env));
        // A value that differs from every default: a flag or variable that is not read shows.
        const fromFlag = switches.has(flag) ? [`--no-${flag.slice(2)}`] : [flag, '3'];
        const sources = [fromFlag[0]!, env, flag];
        const byFlag = outcome(() => loadConfig(fromFlag, base, command), sources);
        const byEnv = outcome(
          () => loadConfig([], { ...base, [env]: switches.has(flag) ? 'false' : '3' }, command),
          sources,
        );
        assert.deepEqual(byEnv, byFlag, `${flag} and ${env}`);
        assert.notDeepEqual(byFlag, defaults, `${flag} changes nothing`);
      }
    });
  }
});

describe('setting keys', () => {
  it('name the unit of their value', () => {
    const units = [
      [/milliseconds|\bms\b/i, 'Ms'],
      [/\bseconds\b/i, 'Seconds'],
      [/\bdays\b/i, 'Days'],
    ] as const;
    for (const [group, { settings }] of Object.entries(SCHEMA)) {
      for (const [key, spec] of Object.entries(settings as Record<string, { kind: string; help: string }>)) {
        const name = `${group}.${key}`;
        if (spec.kind === 'bytes') assert.ok(key.endsWith('Bytes'), `${name} holds bytes`);
        for (const [said, suffix] of units) {
          if (said.test(spec.help)) assert.ok(key.endsWith(suffix), `${name}: ${spec.help}`);
        }
      }
    }
  });
});

describe('former setting names', () => {
  it('reads --max-event-loop-delay-ms and its variable as --max-event-loop-delay, the current name winning', () => {
    const delay = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
      loadConfig(argv, env).protection.maxEventLoopDelayMs;
    assert.equal(delay(['--max-event-loop-delay-ms', '7']), 7);
    assert.equal(delay([], { DIGESTD_MAX_EVENT_LOOP_DELAY_MS: '8' }), 8);
    assert.equal(delay(['--max-event-loop-delay-ms', '7', '--max-event-loop-delay', '9']), 9);
    assert.equal(delay([], { DIGESTD_MAX_EVENT_LOOP_DELAY_MS: '8', DIGESTD_MAX_EVENT_LOOP_DELAY: '9' }), 9);
    assert.doesNotMatch(settingsHelp('serve'), /delay-ms/);
  });

  it('reads the byte flags that named their unit (--max-message-bytes, --cache-bytes...) under their current names', () => {
    const former = loadConfig(
      [
        '--max-message-bytes',
        '2KiB',
        '--max-header-bytes',
        '4KiB',
        '--max-url-bytes',
        '1KiB',
        '--max-answer-bytes',
        '8KiB',
      ],
      { DIGESTD_CACHE_BYTES: '3MiB' },
    );
    assert.equal(former.http.maxMessageBytes, 2048);
    assert.equal(former.http.maxAnswerBytes, 8192);
    assert.equal(former.store.cacheBytes, 3 * 1024 * 1024);
    assert.equal(
      loadConfig(['--max-message-bytes', '2KiB', '--max-message-size', '3KiB'], {}).http.maxMessageBytes,
      3072,
    );
    assert.doesNotMatch(settingsHelp('serve'), /-bytes\b/);
  });

  it('no flag names its unit: the key does, and --help shows it', () => {
    for (const command of ['serve', 'migrate', 'verify', 'backup', 'restore'] as const) {
      for (const [flag] of listed(command).names)
        assert.doesNotMatch(flag, /-(ms|seconds|days|bytes)$/, flag);
    }
  });
});
