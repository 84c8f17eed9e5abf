import { createServer, type Server } from 'node:http';

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/**
 * The plain-HTTP listener of http-01: answers `/.well-known/acme-challenge/<token>` with its key
 * authorization while an order waits for it, and redirects every other request to HTTPS.
 */
export function createAcmeHttpServer(options: {
  tokens: ReadonlyMap<string, string>;
  /** The HTTPS port redirects point at. */
  httpsPort: () => number;
}): Server {
  return createServer((request, response) => {
    const url = request.url ?? '/';
    if (url.startsWith(CHALLENGE_PREFIX)) {
      const keyAuthorization = options.tokens.get(url.slice(CHALLENGE_PREFIX.length));
      response.writeHead(keyAuthorization === undefined ? 404 : 200, { 'content-type': 'text/plain' });
      response.end(keyAuthorization ?? 'no such challenge');
      return;
    }
    const host = (request.headers.host ?? '').replace(/:\d+$/, '');
    if (host === '' || !/^[a-z0-9.\-[\]:]+$/i.test(host)) {
      response.writeHead(400, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ err_msg: 'A Host header is needed to redirect to HTTPS', code: 'BAD_REQUEST' }),
      );
      return;
    }
    const port = options.httpsPort();
    response.writeHead(308, { location: `https://${host}${port === 443 ? '' : `:${port}`}${url}` });
    response.end();
  });
}
