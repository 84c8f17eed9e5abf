import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { postMessage, request, startServer } from '../../helpers/server.js';

function sampleValue(text: string, pattern: RegExp): number {
  return text
    .split('\n')
    .filter((line) => pattern.test(line))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

describe('metrics of a supervised server', () => {
  it('adds up the counts of two workers, on the public port and on --metrics-port', async () => {
    const server = await startServer({ args: ['--workers', '2', '--metrics-port', '0'] });
    try {
      const posts = 40;
      for (let index = 0; index < posts; index += 1) {
        // A new connection each time, so that both workers take some of the requests.
        const reply = await postMessage(server, `cluster metrics ${index} ${Math.random()}`, {
          agent: false,
        });
        assert.equal(reply.status, 201);
      }
      const servingPids = new Set(
        server.logs
          .filter((line) => line.msg === 'request' && line.method === 'POST')
          .map((line) => line.pid),
      );
      assert.equal(servingPids.size, 2, 'both workers served some of the POSTs');

      const metricsLine = server.logs.find((line) => typeof line.metricsAddress === 'string');
      assert.ok(metricsLine, 'the primary logs where the metrics listener is');
      const separate = await request(`${String(metricsLine.metricsAddress)}/metrics`);
      assert.equal(separate.status, 200);
      assert.equal(sampleValue(separate.body, /^digestd_messages_stored_total /), posts);
      assert.equal(
        sampleValue(separate.body, /^digestd_http_requests_total\{.*method="POST".*status="201"/),
        posts,
      );
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  it('answers /metrics on the public port with the sum over workers', async () => {
    const server = await startServer({ args: ['--workers', '2'] });
    try {
      for (let index = 0; index < 20; index += 1) {
        await postMessage(server, `public metrics ${index} ${Math.random()}`, { agent: false });
      }
      for (let scrape = 0; scrape < 4; scrape += 1) {
        const reply = await request(`${server.url}/metrics`, { ca: server.ca, agent: false });
        assert.equal(reply.status, 200);
        assert.equal(sampleValue(reply.body, /^digestd_messages_stored_total /), 20);
      }
    } finally {
      await server.stop();
    }
  });
});
