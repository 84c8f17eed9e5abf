import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The rustls client's crate (Cargo.toml and src/main.rs). */
const CRATE = fileURLToPath(new URL('../clients/rustls/', import.meta.url));
/** Debian's crates, which librust-*-dev packages install: the build needs no network. */
const DEBIAN_REGISTRY = '/usr/share/cargo/registry';
/** Where built clients are kept between runs, keyed by their sources and the compiler. */
const CACHE = process.env.DIGESTD_TEST_CACHE ?? path.join(homedir(), '.cache', 'digestd-test');

/** Debian's cargo when installed (it matches Debian's crates), else the one on PATH. */
async function cargoCommand(): Promise<string> {
  return access('/usr/bin/cargo').then(
    () => '/usr/bin/cargo',
    () => 'cargo',
  );
}

/**
 * The path of the rustls client (test/clients/rustls), built offline from Debian's crates on first
 * use and kept in the cache: a later run with the same sources and compiler reuses the binary.
 * Rejects when cargo or the crates (librust-rustls-dev, librust-rustls-pemfile-dev) are missing.
 */
export async function rustlsClient(): Promise<string> {
  const cargo = await cargoCommand();
  const { stdout: version } = await run(cargo, ['--version']);
  const hash = createHash('sha256').update(version);
  for (const file of ['Cargo.toml', 'src/main.rs']) hash.update(await readFile(path.join(CRATE, file)));
  const directory = path.join(CACHE, `rustls-client-${hash.digest('hex').slice(0, 16)}`);
  const binary = path.join(directory, 'digestd-rustls-client');
  try {
    await access(binary);
    return binary;
  } catch {
    // Not built yet with these sources.
  }
  const cargoHome = path.join(CACHE, 'cargo-home');
  await mkdir(cargoHome, { recursive: true });
  await writeFile(
    path.join(cargoHome, 'config.toml'),
    `[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "${DEBIAN_REGISTRY}"\n[net]\noffline = true\n`,
  );
  const target = path.join(CACHE, 'rustls-target');
  await run(
    cargo,
    ['build', '--release', '--offline', '--quiet', '--manifest-path', path.join(CRATE, 'Cargo.toml')],
    {
      env: { ...process.env, CARGO_HOME: cargoHome, CARGO_TARGET_DIR: target },
      timeout: 600_000,
    },
  );
  await mkdir(directory, { recursive: true });
  await copyFile(path.join(target, 'release', 'digestd-rustls-client'), `${binary}.tmp`);
  await rename(`${binary}.tmp`, binary);
  return binary;
}

/** Python 3 with requests: Debian's python3-requests for /usr/bin/python3. */
export async function pythonWithRequests(): Promise<string> {
  for (const python of ['/usr/bin/python3', 'python3']) {
    try {
      await run(python, ['-c', 'import requests']);
      return python;
    } catch {
      // Try the next one.
    }
  }
  throw new Error('no python3 with the requests module');
}
