import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useTestApp } from '../../helpers/app.js';

interface OpenApi {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<
    string,
    Record<string, { responses: Record<string, unknown>; requestBody?: { content: object } }>
  >;
}

const testApp = useTestApp();

describe('GET /openapi.json', () => {
  it('is an OpenAPI 3.1 document of the API built from the route schemas', async () => {
    const response = await testApp.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/json');
    const document = response.json<OpenApi>();
    assert.equal(document.openapi, '3.1.0');
    assert.equal(document.info.title, 'digestd');
    assert.deepEqual(Object.keys(document.paths).sort(), [
      '/healthz',
      '/messages',
      '/messages/batch',
      '/messages/lookup',
      '/messages/{digest}',
      '/metrics',
      '/readyz',
    ]);
    assert.deepEqual(Object.keys(document.paths['/messages'] ?? {}), ['post']);
    assert.deepEqual(Object.keys(document.paths['/messages/{digest}'] ?? {}), ['get', 'delete']);
    const post = document.paths['/messages']?.post;
    assert.deepEqual(Object.keys(post?.requestBody?.content ?? {}).sort(), [
      'application/json',
      'text/plain; charset=utf-8',
    ]);
    assert.ok(post?.responses['201']);
    const get = document.paths['/messages/{digest}']?.get;
    assert.deepEqual(Object.keys(get?.responses ?? {}).sort(), ['200', '304', '404', '410', '500']);
    const remove = document.paths['/messages/{digest}']?.delete;
    assert.deepEqual(Object.keys(remove?.responses ?? {}).sort(), ['200', '400', '401', '403', '503']);
    for (const [path, method] of [
      ['/messages', 'post'],
      ['/messages/batch', 'post'],
      ['/messages/lookup', 'post'],
    ] as const) {
      assert.ok(document.paths[path]?.[method]?.responses['410'], `${method} ${path} knows 410`);
    }
  });
});

describe('GET /docs', () => {
  it('serves the documentation page and its assets from the package', async () => {
    const page = await testApp.app.inject({ method: 'GET', url: '/docs/' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body, /swagger-ui/);
    for (const asset of [
      '/docs/static/swagger-ui-bundle.js',
      '/docs/static/swagger-initializer.js',
      '/docs/json',
    ]) {
      assert.equal((await testApp.app.inject({ method: 'GET', url: asset })).statusCode, 200, asset);
    }
  });
});
