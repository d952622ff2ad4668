// Development routes that act as the phone and the network for the sim
// engine: POST /sim/scan, /sim/inbound, /sim/disconnect. With any other
// engine they respond 404 GW_ERR_SIM_ONLY.

import { DISCONNECT_REASONS } from '../engines/sim.js'
import { GatewayError, gatewayError, isGatewayCode } from '../errors.js'
import { MAX_TEXT_LENGTH, replies, stateReply, userIdBody } from './schemas.js'

const scanBody = {
  type: 'object',
  required: ['user_id', 'phone'],
  properties: {
    user_id: userIdBody,
    phone: { type: 'string', minLength: 1, maxLength: 64 }
  }
}

const inboundBody = {
  type: 'object',
  required: ['user_id', 'from', 'text'],
  properties: {
    user_id: userIdBody,
    from: { type: 'string', minLength: 1, maxLength: 128 },
    text: { type: 'string', maxLength: MAX_TEXT_LENGTH },
    id: { type: 'string', minLength: 1, maxLength: 128 },
    from_lid: { type: 'string', minLength: 1, maxLength: 128 },
    from_me: { type: 'boolean' },
    push_name: { type: 'string', maxLength: 256 }
  }
}

const disconnectBody = {
  type: 'object',
  required: ['user_id', 'reason'],
  properties: {
    user_id: userIdBody,
    reason: { type: 'string', enum: DISCONNECT_REASONS }
  }
}

const inboundReply = {
  type: 'object',
  required: ['gateway_message_id'],
  properties: { gateway_message_id: { type: 'string' } }
}

// Engine errors carry a GW_ERR_* code and a message meant for the caller.
function fromEngine (error) {
  if (error instanceof GatewayError || !isGatewayCode(error.code)) return error
  return new GatewayError(error.code, [], { message: error.message, cause: error })
}

export default async function simRoutes (app, { sessions, config }) {
  app.addHook('preValidation', async (request) => {
    if (config.engine !== 'sim') {
      throw gatewayError('GW_ERR_SIM_ONLY', request.routeOptions.url, config.engine)
    }
  })

  const route = { userScoped: true }

  app.post('/sim/scan', {
    config: route,
    schema: { body: scanBody, response: replies(200, stateReply) }
  }, async (request) => {
    const { user_id: userId, phone } = request.body
    const engine = sessions.liveEngine(userId)
    try {
      await engine.scan(phone)
    } catch (error) {
      if (error.code === 'GW_ERR_QR_NOT_PENDING') {
        throw gatewayError('GW_ERR_QR_NOT_PENDING', userId, engine.state)
      }
      if (error.code === 'GW_ERR_INVALID_RECIPIENT' || error.code === 'GW_ERR_INVALID_PHONE') {
        throw gatewayError('GW_ERR_INVALID_PHONE', JSON.stringify(phone))
      }
      throw fromEngine(error)
    }
    return { user_id: userId, state: sessions.status(userId).state }
  })

  app.post('/sim/inbound', {
    config: route,
    schema: { body: inboundBody, response: replies(202, inboundReply) }
  }, async (request, reply) => {
    const { user_id: userId, from, text } = request.body
    const engine = sessions.liveEngine(userId)
    try {
      const { id } = engine.deliver(from, text, {
        id: request.body.id,
        fromLid: request.body.from_lid,
        fromMe: request.body.from_me ?? false,
        pushName: request.body.push_name ?? null
      })
      reply.code(202)
      return { gateway_message_id: id }
    } catch (error) {
      throw fromEngine(error)
    }
  })

  app.post('/sim/disconnect', {
    config: route,
    schema: { body: disconnectBody, response: replies(200, stateReply) }
  }, async (request) => {
    const { user_id: userId, reason } = request.body
    const engine = sessions.liveEngine(userId)
    try {
      engine.disconnect(reason)
    } catch (error) {
      throw fromEngine(error)
    }
    return { user_id: userId, state: sessions.status(userId).state }
  })
}
