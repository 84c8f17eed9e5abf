#!/usr/bin/env node
// Container health check: GET /healthz on this host, exit 0 when it answers 200, 1 otherwise.
// It reads the same settings as `digestd serve` (DIGESTD_* variables, or the same flags), and
// trusts the certificate the server uses (the generated self-signed one or --tls-cert); the host
// name is not checked because the check always connects over loopback.
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import process from 'node:process';
import { rootCertificates } from 'node:tls';
import { loadConfig } from '../dist/config.js';

const TIMEOUT_MS = 2500;

function fail(reason) {
  process.stderr.write(`healthcheck: ${reason}\n`);
  process.exit(1);
}

let config;
try {
  config = loadConfig(process.argv.slice(2));
} catch (error) {
  fail(error.message);
}
const wildcard = ['0.0.0.0', '::', '[::]'].includes(config.host);
const host = wildcard ? (config.host === '0.0.0.0' ? '127.0.0.1' : '::1') : config.host;
const options = { host, port: config.port, path: '/healthz', timeout: TIMEOUT_MS };
let send = httpRequest;
if (config.tls) {
  send = httpsRequest;
  try {
    // The generated certificate is its own CA; an operator's certificate (maybe a chain without
    // its root) is checked against the system's CAs as well.
    options.ca = [
      readFileSync(config.tlsCert ?? path.join(config.dataDir, 'tls', 'cert.pem')),
      ...rootCertificates,
    ];
  } catch (error) {
    fail(`cannot read the server certificate: ${error.message}`);
  }
  options.checkServerIdentity = () => undefined;
}
const outgoing = send(options, (response) => {
  response.resume();
  if (response.statusCode === 200) process.exit(0);
  fail(`/healthz answered ${response.statusCode}`);
});
outgoing.on('timeout', () => outgoing.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
outgoing.on('error', (error) => fail(error.message));
outgoing.end();
