import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP forwarder between a client and a real server, used to cut the network: `stall()` keeps
 * connections open but forwards nothing (a hung server or a black-holed network), `resume()`
 * drops the stalled connections and forwards again. `hold()` delays new connections instead, and
 * `release()` connects them to the server then, as a slow network path would.
 */
export interface TcpProxy {
  port: number;
  stall(): void;
  resume(): void;
  hold(): void;
  release(): void;
  /** Connections accepted while held and not yet forwarded. */
  readonly held: number;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 and a free port and forwards to `targetHost:targetPort`. */
export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  let stalled = false;
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  let holding = false;
  const held: Socket[] = [];
  const forward = (client: Socket) => {
    const upstream = connect(targetPort, targetHost);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  };
  const server: Server = createServer((client) => {
    track(client);
    if (stalled) return; // accepted, never answered
    if (holding) {
      client.pause();
      held.push(client);
      return;
    }
    forward(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    stall() {
      stalled = true;
      // Existing connections stop carrying data both ways.
      for (const socket of sockets) socket.pause();
      for (const socket of sockets) socket.unpipe();
    },
    resume() {
      stalled = false;
      for (const socket of sockets) socket.destroy();
    },
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const client of held.splice(0)) if (!client.destroyed) forward(client);
    },
    get held() {
      return held.length;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
