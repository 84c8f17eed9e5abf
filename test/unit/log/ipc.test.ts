import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import {
  IpcLogDestination,
  type IpcLogDestinationOptions,
  type LogLinesMessage,
} from '../../../src/log/ipc.js';

function recorder(options: Partial<IpcLogDestinationOptions> = {}) {
  const sent: string[] = [];
  const destination = new IpcLogDestination({
    batchMs: 30,
    ...options,
    send: (message: LogLinesMessage, callback) => {
      sent.push(message.lines);
      setImmediate(() => callback(null));
    },
  });
  return { sent, destination };
}

describe('worker log lines over IPC', () => {
  it('sends the lines written within the batch window as one message, in order', async () => {
    const { sent, destination } = recorder();
    for (let index = 0; index < 100; index += 1) destination.write(`{"n":${index}}\n`);
    assert.equal(sent.length, 0, 'nothing is sent before the window ends');
    await sleep(80);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.split('\n').length - 1, 100);
    assert.ok(sent[0]!.startsWith('{"n":0}\n') && sent[0]!.endsWith('{"n":99}\n'));
  });

  it('flush sends at once and calls back when the channel has taken everything', async () => {
    const { sent, destination } = recorder();
    destination.write('{"last":true}\n');
    await new Promise<void>((resolve) => destination.flush(() => resolve()));
    assert.deepEqual(sent, ['{"last":true}\n']);
    assert.equal(destination.dropped.total, 0);
  });

  it('sends a full batch without waiting for the window', () => {
    const { sent, destination } = recorder({ batchBytes: 64, batchMs: 10_000 });
    destination.write(`${'x'.repeat(70)}\n`);
    assert.equal(sent.length, 1);
  });

  it('gives the batch after an early send its own full window', async () => {
    const { sent, destination } = recorder({ batchBytes: 64, batchMs: 300 });
    destination.write('{"n":1}\n'); // opens a 300 ms window
    await sleep(100);
    destination.write(`${'x'.repeat(70)}\n`); // fills the batch: sent at once with the line before
    assert.equal(sent.length, 1);
    destination.write('{"n":2}\n'); // a new batch: its window ends about 300 ms from now
    await sleep(250); // past the end of the first window, before the end of the second
    assert.equal(sent.length, 1, 'the first window does not send the next batch early');
    await sleep(150);
    assert.deepEqual(sent.slice(1), ['{"n":2}\n']);
  });
});
