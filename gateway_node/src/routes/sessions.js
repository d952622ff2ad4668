// Session routes: POST /start, /stop and /logout, GET /status and /qr.

import {
  nullableString,
  replies,
  stateReply,
  userIdOnlyBody,
  userIdOnlyQuery
} from './schemas.js'

const statusReply = {
  type: 'object',
  required: ['user_id', 'state', 'qr_available', 'engine', 'updated_at'],
  properties: {
    user_id: { type: 'integer' },
    state: { type: 'string' },
    jid: nullableString,
    phone: nullableString,
    lid: nullableString,
    push_name: nullableString,
    qr_available: { type: 'boolean' },
    engine: { type: 'string' },
    updated_at: { type: 'string' }
  }
}

const qrReply = {
  type: 'object',
  required: ['qr', 'expires_at'],
  properties: {
    qr: { type: 'string' },
    expires_at: { type: 'string' }
  }
}

const config = { userScoped: true }

export default async function sessionRoutes (app, { sessions }) {
  app.post('/start', {
    config,
    schema: { body: userIdOnlyBody, response: replies(202, stateReply) }
  }, async (request, reply) => {
    const userId = request.body.user_id
    const state = await sessions.start(userId)
    reply.code(202)
    return { user_id: userId, state }
  })

  app.post('/stop', {
    config,
    schema: { body: userIdOnlyBody, response: replies(200, stateReply) }
  }, async (request) => {
    const userId = request.body.user_id
    return { user_id: userId, state: await sessions.stop(userId) }
  })

  app.post('/logout', {
    config,
    schema: { body: userIdOnlyBody, response: replies(200, stateReply) }
  }, async (request) => {
    const userId = request.body.user_id
    return { user_id: userId, state: await sessions.logout(userId) }
  })

  app.get('/status', {
    config,
    schema: { querystring: userIdOnlyQuery, response: replies(200, statusReply) }
  }, async (request) => {
    return sessions.status(Number(request.query.user_id))
  })

  app.get('/qr', {
    config,
    schema: { querystring: userIdOnlyQuery, response: replies(200, qrReply) }
  }, async (request) => {
    return sessions.qr(Number(request.query.user_id))
  })
}
