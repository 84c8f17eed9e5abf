import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { VERSION } from '../../version.js';

const version = VERSION;

/**
 * OpenAPI 3.1 generated from the route schemas (@fastify/swagger), served at /openapi.json, and a
 * browsable page at /docs (@fastify/swagger-ui, its assets served from the package, no CDN).
 * Register before the routes: the document is built from the routes registered after it.
 */
export function registerDocs(app: FastifyInstance): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'digestd',
        version,
        description:
          'A content-addressed message store: POST a message, GET it back by the SHA-256 digest of its UTF-8 bytes. ' +
          'Every error is {"err_msg": "<a sentence>", "code": "<MACHINE_CODE>"}.',
      },
      components: {
        securitySchemes: { writeToken: { type: 'http', scheme: 'bearer', description: '--write-token' } },
      },
    },
  });
  void app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  app.after(() => {
    app.get('/openapi.json', { schema: { hide: true } }, (_request, reply) => reply.send(app.swagger()));
  });
}
