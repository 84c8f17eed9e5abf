import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { VERSION } from '../../version.js';

/**
 * OpenAPI 3.1 generated from the route schemas (@fastify/swagger), served at /openapi.json, and a
 * browsable page at /docs (@fastify/swagger-ui, its assets served from the package, no CDN).
 */
const docs: FastifyPluginAsync = async (app) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'digestd',
        version: VERSION,
        description:
          'A content-addressed message store: POST a message, GET it back by the SHA-256 digest of its UTF-8 bytes. ' +
          // The description is Markdown (the /docs page renders it): in a code span, the placeholders
          // are shown as written instead of being taken for HTML tags.
          'Every error is `{"err_msg": "<a sentence>", "code": "<MACHINE_CODE>"}`.',
      },
      components: {
        securitySchemes: { writeToken: { type: 'http', scheme: 'bearer', description: '--write-token' } },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true } }, (_request, reply) => reply.send(app.swagger()));
};

/**
 * Not encapsulated, and registered before the routes: the document is built from the routes that
 * @fastify/swagger's onRoute hook sees, which are those of its context registered after it.
 */
export default fastifyPlugin(docs, { name: 'digestd-docs', fastify: '5.x' });
