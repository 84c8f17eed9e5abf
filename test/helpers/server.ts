/**
 * The harness (test/harness/) as the tests use it: whatever a test file leaves running, a failed
 * assertion before its stop() for example, is killed at the end of the file, so that the file's
 * process can exit.
 */
import { after } from 'node:test';
import { killAllServers } from '../harness/digestd.js';

after(killAllServers);

export {
  DIGESTD_BIN,
  startServer,
  temporaryDirectory,
  type RunningServer,
  type StartOptions,
} from '../harness/digestd.js';
export { postMessage, request, type RequestOptions, type SimpleResponse } from '../harness/http.js';
