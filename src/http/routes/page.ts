import type { FastifyPluginCallback } from 'fastify';

/**
 * A small page for people at GET /: paste a message, get its digest as a link; open a digest,
 * read the message. Plain HTML, CSS and JavaScript served from here (no framework, no CDN), under
 * a Content-Security-Policy that allows only this origin.
 */

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

const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>digestd</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<main>
<h1>digestd</h1>
<p>A content-addressed message store: a message is stored under the SHA-256 digest of its UTF-8 bytes.
<a href="/docs">API documentation</a> · <a href="/openapi.json">OpenAPI</a></p>

<section>
<h2>Store a message</h2>
<form id="store-form">
<label for="message">Message</label>
<textarea id="message" name="message" rows="5" required></textarea>
<details><summary>Write token</summary>
<label for="token">Only needed when the server requires one</label>
<input id="token" name="token" type="password" autocomplete="off">
</details>
<button id="store" type="submit">Store</button>
</form>
<p id="store-result" role="status" aria-live="polite"></p>
</section>

<section>
<h2>Open a digest</h2>
<form id="open-form">
<label for="digest">Digest</label>
<input id="digest" name="digest" required pattern="[0-9a-fA-F]{64}" maxlength="64" spellcheck="false"
  placeholder="64 hex digits">
<button id="open" type="submit">Open</button>
</form>
<div id="view" hidden>
<h3>Message <code id="view-digest"></code></h3>
<pre id="message-view"></pre>
</div>
<p id="open-result" role="status" aria-live="polite"></p>
</section>
</main>
</body>
</html>
`;

const PAGE_CSS = `body { font-family: system-ui, sans-serif; margin: 0; background: #f7f7f8; color: #1d1d1f; }
main { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
section { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; }
label { display: block; font-weight: 600; margin: 0.5rem 0 0.25rem; }
textarea, input { width: 100%; box-sizing: border-box; font: inherit; padding: 0.4rem; }
input#digest, code, pre { font-family: ui-monospace, monospace; }
button { margin-top: 0.75rem; padding: 0.4rem 1.2rem; font: inherit; cursor: pointer; }
pre { white-space: pre-wrap; word-break: break-word; background: #f0f0f2; padding: 0.75rem; border-radius: 4px; }
.error { color: #b00020; }
a, code { word-break: break-all; }
h3 code { font-size: 0.85em; font-weight: normal; display: block; }
`;

const PAGE_JS = `'use strict';
const HEX_DIGEST = /^[0-9a-fA-F]{64}$/;

function show(element, text, isError) {
  element.textContent = text;
  element.classList.toggle('error', Boolean(isError));
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.err_msg + ' (' + body.code + ')';
  } catch {
    return 'HTTP ' + response.status;
  }
}

async function store(event) {
  event.preventDefault();
  const result = document.getElementById('store-result');
  const headers = { 'content-type': 'application/json' };
  const token = document.getElementById('token').value.trim();
  if (token !== '') headers.authorization = 'Bearer ' + token;
  show(result, 'Storing…');
  try {
    const response = await fetch('/messages', {
      method: 'POST',
      headers,
      body: JSON.stringify({ message: document.getElementById('message').value }),
    });
    if (!response.ok) return show(result, await errorText(response), true);
    const { digest } = await response.json();
    result.textContent = 'Stored as ';
    result.classList.remove('error');
    const link = document.createElement('a');
    link.id = 'digest-link';
    link.href = '#' + digest;
    link.textContent = digest;
    result.append(link);
  } catch (error) {
    show(result, 'Network error: ' + error.message, true);
  }
}

async function open(digest) {
  const result = document.getElementById('open-result');
  const view = document.getElementById('view');
  document.getElementById('digest').value = digest;
  view.hidden = true;
  show(result, 'Loading…');
  try {
    const response = await fetch('/messages/' + encodeURIComponent(digest), {
      headers: { accept: 'application/json' },
    });
    if (!response.ok) return show(result, await errorText(response), true);
    const { message } = await response.json();
    document.getElementById('view-digest').textContent = digest.toLowerCase();
    document.getElementById('message-view').textContent = message;
    view.hidden = false;
    show(result, '');
  } catch (error) {
    show(result, 'Network error: ' + error.message, true);
  }
}

function openFromHash() {
  const digest = decodeURIComponent(location.hash.slice(1));
  if (HEX_DIGEST.test(digest)) void open(digest);
}

document.getElementById('store-form').addEventListener('submit', store);
document.getElementById('open-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const digest = document.getElementById('digest').value.trim();
  if (location.hash === '#' + digest) openFromHash();
  else location.hash = digest;
});
window.addEventListener('hashchange', openFromHash);
openFromHash();
`;

/** GET / (the page), /app.js and /app.css. */
export const pageRoutes: FastifyPluginCallback = (app, _options, done) => {
  const hidden = { schema: { hide: true } };
  app.get('/', hidden, (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .header('cache-control', 'no-cache')
      .send(PAGE_HTML),
  );
  app.get('/app.js', hidden, (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(PAGE_JS),
  );
  app.get('/app.css', hidden, (_request, reply) =>
    reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache').send(PAGE_CSS),
  );
  done();
};
