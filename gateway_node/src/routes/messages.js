// POST /send.

import { MAX_TEXT_LENGTH, replies, userIdBody } from './schemas.js'

const sendBody = {
  type: 'object',
  required: ['user_id', 'message_id', 'to', 'text'],
  properties: {
    user_id: userIdBody,
    message_id: { type: 'string', minLength: 1, maxLength: 128 },
    to: { type: 'string', minLength: 1, maxLength: 128 },
    text: { type: 'string', minLength: 1, maxLength: MAX_TEXT_LENGTH }
  }
}

const sendReply = {
  type: 'object',
  required: ['gateway_message_id', 'to_jid'],
  properties: {
    gateway_message_id: { type: 'string' },
    to_jid: { type: 'string' }
  }
}

export default async function messageRoutes (app, { sender }) {
  app.post('/send', {
    config: { userScoped: true },
    schema: { body: sendBody, response: replies(202, sendReply) }
  }, async (request, reply) => {
    const { user_id: userId, message_id: messageId, to, text } = request.body
    const answer = await sender.send(userId, { messageId, to, text })
    reply.code(202)
    return answer
  })
}
