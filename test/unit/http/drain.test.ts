import assert from 'node:assert/strict';
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import fastify from 'fastify';
import { drain, listen } from '../../../src/http/listen.js';

/**
 * drain() on a plain Fastify app, as the --metrics-port listener is built (node's own server,
 * without digestd's connection layer): an answer under way when the drain begins is the last of
 * its connection, and the drain ends once it is sent.
 */
describe('drain of a plain HTTP app', () => {
  it('answers the request under way with Connection: close, then closes', async () => {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let started: () => void = () => {};
    const underWay = new Promise<void>((resolve) => (started = resolve));
    const app = fastify();
    app.get('/slow', async () => {
      started();
      await released;
      return { ok: true };
    });
    app.get('/fast', () => ({ ok: true }));
    const address = await listen(app, { host: '127.0.0.1', port: 0 });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<{ response: IncomingMessage; body: string }>((resolve, reject) => {
        httpRequest({ host: '127.0.0.1', port: address.port, path, agent }, (response) => {
          let body = '';
          response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
          response.on('end', () => resolve({ response, body }));
        })
          .on('error', reject)
          .end();
      });
    try {
      // A first answer on the connection, kept alive; the second request reuses the connection.
      const first = await get('/fast');
      assert.equal(first.response.headers.connection, 'keep-alive');
      const slow = get('/slow');
      await underWay;
      let drained = false;
      const draining = drain(app, { timeoutMs: 10_000 }).then(() => (drained = true));
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(drained, false, 'the drain waits for the answer under way');
      release();
      const answer = await slow;
      assert.equal(answer.response.statusCode, 200);
      assert.equal(answer.body, '{"ok":true}');
      assert.equal(answer.response.headers.connection, 'close');
      await draining;
      assert.equal(app.server.listening, false);
    } finally {
      release();
      agent.destroy();
      if (app.server.listening) await app.close();
    }
  });
});
