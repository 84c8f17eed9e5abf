import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { describe, it } from 'node:test';
import { postMessage, request, startServer } from '../../helpers/server.js';

describe('durability', () => {
  it('keeps a message answered 201 when the process is SIGKILLed right after', async () => {
    const server = await startServer();
    const agent = new Agent({ keepAlive: true, ca: server.ca });
    const posted = await postMessage(server, 'survives SIGKILL', { agent });
    assert.equal(posted.status, 201);
    server.process.kill('SIGKILL');
    await server.exited;
    agent.destroy();

    const restarted = await startServer({ dataDir: server.dataDir });
    try {
      const { digest } = posted.json<{ digest: string }>();
      const read = await request(`${restarted.url}/messages/${digest}`, { ca: restarted.ca });
      assert.equal(read.status, 200);
      assert.deepEqual(read.json(), { message: 'survives SIGKILL' });
    } finally {
      await restarted.stop();
    }
  });

  it('keeps every message of a concurrent burst answered 201 across SIGKILL', async () => {
    const server = await startServer();
    const agent = new Agent({ keepAlive: true, maxSockets: 16, ca: server.ca });
    const messages = Array.from({ length: 200 }, (_, index) => `burst ${index} ${Math.random()}`);
    const replies = await Promise.all(messages.map((message) => postMessage(server, message, { agent })));
    server.process.kill('SIGKILL');
    await server.exited;
    agent.destroy();
    assert.ok(replies.every((reply) => reply.status === 201));

    const restarted = await startServer({ dataDir: server.dataDir });
    try {
      for (const [index, reply] of replies.entries()) {
        const read = await request(`${restarted.url}/messages/${reply.json<{ digest: string }>().digest}`, {
          ca: restarted.ca,
        });
        assert.deepEqual(read.json(), { message: messages[index] });
      }
    } finally {
      await restarted.stop();
    }
  });

  it('exits 0 on SIGTERM and a second start on the same directory sees everything', async () => {
    const server = await startServer();
    const posted = await postMessage(server, 'before SIGTERM');
    assert.equal(await server.stop('SIGTERM'), 0);
    const restarted = await startServer({ dataDir: server.dataDir });
    try {
      const read = await request(`${restarted.url}/messages/${posted.json<{ digest: string }>().digest}`, {
        ca: restarted.ca,
      });
      assert.deepEqual(read.json(), { message: 'before SIGTERM' });
    } finally {
      await restarted.stop();
    }
  });

  it('logs one JSON access line per request with id, method, url, status and duration', async () => {
    const server = await startServer();
    await postMessage(server, 'logged');
    await request(`${server.url}/messages/iWillReturn404`, { ca: server.ca });
    await server.stop();
    const access = server.logs.filter((line) => line.msg === 'request');
    assert.equal(access.length, 2);
    const [post, get] = access;
    assert.equal(post?.method, 'POST');
    assert.equal(post?.url, '/messages');
    assert.equal(post?.status, 201);
    assert.equal(get?.status, 404);
    for (const line of access) {
      assert.equal(typeof line.reqId, 'string');
      assert.equal(typeof line.ms, 'number');
      assert.equal(typeof line.time, 'string');
    }
  });
});
