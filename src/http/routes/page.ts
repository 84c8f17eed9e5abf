import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync } from 'fastify';

/**
 * A small page for people at GET /: paste a message, get its digest as a link; open a digest,
 * read the message. Plain HTML, CSS and JavaScript in src/http/page/ (no framework, no CDN), read
 * once when the app is built and served under a Content-Security-Policy that allows only this
 * origin. The build copies that folder beside the compiled code, so the same relative path holds
 * in src/ and dist/.
 */

const PAGE_DIRECTORY = new URL('../page/', import.meta.url);

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const readPageFile = (name: string) => readFile(new URL(name, PAGE_DIRECTORY), 'utf8');

/** GET / (the page), /app.js and /app.css. */
export const pageRoutes: FastifyPluginAsync = async (app) => {
  const [html, css, script] = await Promise.all([
    readPageFile('index.html'),
    readPageFile('page.css'),
    readPageFile('page.js'),
  ]);
  const hidden = { schema: { hide: true } };
  app.get('/', hidden, (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .header('cache-control', 'no-cache')
      .send(html),
  );
  app.get('/app.js', hidden, (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(script),
  );
  app.get('/app.css', hidden, (_request, reply) =>
    reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache').send(css),
  );
};
