// POST /outbox/dead-letters/requeue: an operator sends dead letters again.

import { userIdBody } from './schemas.js'

export default async function outboxRoutes (app, { outbox }) {
  app.post('/outbox/dead-letters/requeue', {
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { user_id: userIdBody }
      },
      response: {
        200: {
          type: 'object',
          required: ['requeued'],
          properties: { requeued: { type: 'integer' } }
        }
      }
    }
  }, async (request) => {
    const userId = request.body?.user_id ?? null
    return { requeued: outbox.requeueDeadLetters(userId) }
  })
}
