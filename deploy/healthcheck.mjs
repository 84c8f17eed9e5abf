#!/usr/bin/env node
// Container health check: GET /healthz from the running digestd, exit 0 when it answers 200, 1
// otherwise. The primary writes where it listens (URL, certificate) to listening.json in its data
// directory once every worker listens, so the check follows whatever flags or variables `serve`
// was given for the port, host and TLS. The data directory itself comes from DIGESTD_DATA_DIR
// (the image sets it) or --data-dir given to this script. A wildcard host is probed over loopback;
// the certificate is trusted as the server's own, and its host name is not checked for that reason.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { rootCertificates } from 'node:tls';
import { URL } from 'node:url';
import { loadConfig } from '../dist/config/load.js';
import { LISTEN_FILE, readListenFile } from '../dist/process/listen-file.js';

const TIMEOUT_MS = 2500;

function fail(reason) {
  process.stderr.write(`healthcheck: ${reason}\n`);
  process.exit(1);
}

let dataDir;
try {
  dataDir = loadConfig(process.argv.slice(2)).data.dir;
} catch (error) {
  fail(error.message);
}
let record;
try {
  record = await readListenFile(dataDir);
} catch (error) {
  fail(
    error.code === 'ENOENT'
      ? `digestd is not listening yet (no ${LISTEN_FILE} in ${dataDir})`
      : `cannot read ${LISTEN_FILE}: ${error.message}`,
  );
}
const url = new URL('/healthz', record.url);
const hostname = url.hostname.replace(/^\[|\]$/g, '');
const host = hostname === '0.0.0.0' ? '127.0.0.1' : hostname === '::' ? '::1' : hostname;
const options = { host, port: url.port, path: url.pathname, timeout: TIMEOUT_MS };
let send = httpRequest;
if (url.protocol === 'https:') {
  send = httpsRequest;
  try {
    // The listen record names the certificate to trust: the local CA that signed the served one,
    // or the operator's certificate (maybe a chain without its root, so the system's CAs too).
    const trusted = record.ca ?? record.cert;
    options.ca = [...(trusted ? [readFileSync(trusted)] : []), ...rootCertificates];
    // The recorded certificates are trusted as they are, even without the root above them: an
    // ACME chain from a private CA, or the operator's chain.
    options.allowPartialTrustChain = true;
  } catch (error) {
    fail(`cannot read the server certificate: ${error.message}`);
  }
  options.checkServerIdentity = () => undefined;
}
const outgoing = send(options, (response) => {
  response.resume();
  if (response.statusCode === 200) process.exit(0);
  fail(`${record.url}/healthz answered ${response.statusCode}`);
});
outgoing.on('timeout', () => outgoing.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
outgoing.on('error', (error) => fail(`${record.url}: ${error.message}`));
outgoing.end();
