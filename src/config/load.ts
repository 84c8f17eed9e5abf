import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { InvalidConfig } from '../errors.js';
import { flagOf, namesOf, settingOf, settingsOf, SETTINGS } from './names.js';
import { MIN_WORKER_TIMEOUT_MS, type Command, type Config } from './schema.js';
import { parseValue } from './values.js';

function parseArgsOptions(
  command: Command,
): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const { spec, flag, former } of settingsOf(command)) {
    if (former !== undefined) options[former.flag] = { type: 'string' };
    if (spec.kind === 'list') {
      options[flag] = { type: 'string', multiple: true };
    } else if (spec.kind === 'boolean') {
      options[flag] = { type: 'boolean' };
      options[`no-${flag}`] = { type: 'boolean' };
    } else {
      options[flag] = { type: 'string' };
    }
  }
  return options;
}

/** Edits (insert, delete, substitute one character) that turn `from` into `to`. */
function editDistance(from: string, to: string): number {
  let previous = Array.from({ length: to.length + 1 }, (_, index) => index);
  for (let i = 1; i <= from.length; i++) {
    const current = [i];
    for (let j = 1; j <= to.length; j++) {
      const substitution = previous[j - 1]! + (from[i - 1] === to[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution);
    }
    previous = current;
  }
  return previous[to.length]!;
}

/** parseArgs's message, and for an unknown flag the nearest one this subcommand takes, if near. */
function withSuggestion(error: Error & { code?: string }, command: Command): string {
  const unknown = /^Unknown option '--?([^'=]+)/.exec(error.message)?.[1];
  if (error.code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || unknown === undefined) return error.message;
  const flags = settingsOf(command).flatMap(({ spec, flag }) =>
    spec.kind === 'boolean' ? [flag, `no-${flag}`] : [flag],
  );
  const [nearest] = flags
    .map((flag) => [flag, editDistance(unknown, flag)] as const)
    .sort((a, b) => a[1] - b[1]);
  const near =
    nearest !== undefined && nearest[1] <= Math.min(2, Math.max(1, Math.floor(unknown.length / 2)));
  return `--${unknown}: unknown option${near ? `; did you mean --${nearest[0]}?` : ''} (digestd ${command} --help lists them)`;
}

/**
 * Freezes a configuration and each of its groups: what the CLI loads, and what a worker receives
 * (a copy, over IPC).
 */
export function freezeConfig(config: Config): Config {
  for (const group of Object.values(config)) Object.freeze(group);
  return Object.freeze(config);
}

/** Subcommands that take operands besides their flags (`digestd remove <digest>...`). */
const TAKES_OPERANDS: ReadonlySet<Command> = new Set(['remove']);

/**
 * Builds the configuration of a subcommand from the environment and command-line flags.
 * Throws InvalidConfig listing every bad setting by flag and environment variable.
 * Settings of other subcommands keep their defaults.
 */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  command: Command = 'serve',
): Config {
  return loadCommandLine(argv, env, command).config;
}

/**
 * loadConfig, and the operands of a subcommand that takes them (`digestd remove`'s digests), in
 * the order given; any other subcommand refuses operands.
 */
export function loadCommandLine(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  command: Command = 'serve',
): { config: Config; operands: readonly string[] } {
  const problems: string[] = [];
  let flags: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let operands: string[];
  try {
    ({ values: flags, positionals: operands } = parseArgs({
      args: [...argv],
      options: parseArgsOptions(command),
      strict: true,
      allowPositionals: TAKES_OPERANDS.has(command),
    }));
  } catch (error) {
    throw new InvalidConfig([withSuggestion(error as Error & { code?: string }, command)]);
  }

  const groups: Record<string, Record<string, unknown>> = {};
  const taken = new Set(settingsOf(command));
  for (const setting of SETTINGS) {
    const { group, key, spec, flag } = setting;
    const values = (groups[group] ??= {});
    values[key] = spec.default;
    if (!taken.has(setting)) continue;
    let raw: string | boolean | readonly string[] | undefined;
    let source = '';
    // Environment, then flags; a former name first, so that the current one wins.
    const names = setting.former === undefined ? [setting] : [setting.former, setting];
    for (const name of names) {
      const fromEnv = env[name.env];
      if (fromEnv !== undefined && fromEnv !== '') {
        raw = fromEnv;
        source = name.env;
      }
    }
    for (const name of names) {
      const fromFlag = flags[name.flag];
      if (fromFlag !== undefined) {
        raw = Array.isArray(fromFlag) ? fromFlag.map(String) : fromFlag;
        source = `--${name.flag}`;
      }
    }
    if (spec.kind === 'boolean' && flags[`no-${flag}`] === true) {
      raw = false;
      source = `--no-${flag}`;
    }
    if (raw === undefined) continue;
    const { value, problem } = parseValue(spec, raw);
    if (problem !== undefined) problems.push(`${source}: ${problem}`);
    else values[key] = value;
  }
  groups.store!.url ??= `lmdb:${String(groups.data!.dir)}`;
  const config = groups as unknown as Config;

  const tlsFiles = [
    [flagOf('tls', 'certPath'), config.tls.certPath],
    [flagOf('tls', 'keyPath'), config.tls.keyPath],
  ] as const;
  for (const [flag, file] of tlsFiles) {
    if (file === undefined) continue;
    const found = statSync(file, { throwIfNoEntry: false });
    if (found === undefined) problems.push(`${flag}: ${file} does not exist`);
    else if (found.isFile() && found.size === 0) problems.push(`${flag}: ${file} is empty`);
  }
  const [given, missing] = tlsFiles[0][1] === undefined ? [tlsFiles[1], tlsFiles[0]] : tlsFiles;
  if (given[1] !== undefined && missing[1] === undefined) {
    problems.push(
      `${missing[0]}: required with ${given[0]} (or give neither, and a local CA makes the certificate)`,
    );
  }
  if (config.acme.domains !== undefined) {
    const domains = flagOf('acme', 'domains');
    if (config.tls.certPath !== undefined) {
      problems.push(`${domains}: not with ${flagOf('tls', 'certPath')} (one source of certificates)`);
    }
    if (!config.tls.enabled) {
      problems.push(`${domains}: needs TLS (not with --no-${settingOf('tls', 'enabled').flag})`);
    }
  }
  if (command === 'migrate') {
    const { from, to } = config.migrate;
    if (from === undefined) problems.push(`${namesOf('migrate', 'from')}: required`);
    if (to === undefined) problems.push(`${namesOf('migrate', 'to')}: required`);
    if (from !== undefined && from === to) {
      problems.push(`${flagOf('migrate', 'from')} and ${flagOf('migrate', 'to')}: name two different stores`);
    }
  }
  if (command === 'backup' && config.backup.to === undefined) {
    problems.push(`${namesOf('backup', 'to')}: required`);
  }
  if (command === 'restore') {
    if (config.restore.from === undefined) problems.push(`${namesOf('restore', 'from')}: required`);
    if (config.restore.to === undefined) problems.push(`${namesOf('restore', 'to')}: required`);
  }
  const metricsPort = config.metrics.port;
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === config.listen.port) {
    problems.push(`${flagOf('metrics', 'port')}: must differ from ${flagOf('listen', 'port')}`);
  }
  if (config.connection.headersTimeoutMs > config.connection.requestTimeoutMs) {
    problems.push(
      `${flagOf('connection', 'headersTimeoutMs')} must not be longer than ${flagOf('connection', 'requestTimeoutMs')}`,
    );
  }
  const workerTimeoutMs = config.supervisor.workerTimeoutMs;
  if (workerTimeoutMs > 0 && workerTimeoutMs < MIN_WORKER_TIMEOUT_MS) {
    problems.push(
      `${flagOf('supervisor', 'workerTimeoutMs')}: 0 (off) or at least ${MIN_WORKER_TIMEOUT_MS} ms (a few heartbeats)`,
    );
  }
  if (command === 'remove' && operands.length === 0 && config.remove.from === undefined) {
    problems.push(`name the digests to remove as arguments, or give ${namesOf('remove', 'from')}`);
  }
  if (problems.length > 0) throw new InvalidConfig(problems);
  return { config: freezeConfig(config), operands };
}
