// POST /send and POST /send/batch.
//
// The batch route lets Django send several queued messages of one user in
// one signed request, which saves the per-request overhead. Each item goes
// through MessageSender.send as a /send would, one after another, and its
// result is what /send would have returned for that item alone.

import { gatewayError } from '../errors.js'
import { toErrorReply } from '../request-checks.js'
import { MAX_TEXT_LENGTH, replies, userIdBody } from './schemas.js'

export const MAX_SEND_BATCH = 50

// At least the app's BODY_LIMIT_BYTES (784 KiB), which fits one text of
// MAX_TEXT_LENGTH escaped characters, so any text that /send accepts also
// fits in a batch of one. A test checks that.
export const SEND_BATCH_BODY_LIMIT_BYTES = 4 * 1024 * 1024

// The fields of one message, shared by both routes.
const messageProperties = {
  message_id: { type: 'string', minLength: 1, maxLength: 128 },
  to: { type: 'string', minLength: 1, maxLength: 128 },
  text: { type: 'string', minLength: 1, maxLength: MAX_TEXT_LENGTH }
}

const sendBody = {
  type: 'object',
  required: ['user_id', 'message_id', 'to', 'text'],
  properties: { user_id: userIdBody, ...messageProperties }
}

const sendBatchBody = {
  type: 'object',
  required: ['user_id', 'messages'],
  properties: {
    user_id: userIdBody,
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_SEND_BATCH,
      items: {
        type: 'object',
        required: ['message_id', 'to', 'text'],
        properties: messageProperties
      }
    }
  }
}

const sendReplyProperties = {
  gateway_message_id: { type: 'string' },
  to_jid: { type: 'string' }
}

const sendReply = {
  type: 'object',
  required: ['gateway_message_id', 'to_jid'],
  properties: sendReplyProperties
}

const sendBatchReply = {
  type: 'object',
  required: ['results'],
  properties: {
    results: {
      type: 'array',
      items: {
        anyOf: [
          {
            type: 'object',
            required: ['message_id', 'gateway_message_id', 'to_jid'],
            properties: { message_id: { type: 'string' }, ...sendReplyProperties }
          },
          {
            type: 'object',
            required: ['message_id', 'error'],
            properties: {
              message_id: { type: 'string' },
              error: {
                type: 'object',
                required: ['status', 'code', 'message'],
                properties: {
                  status: { type: 'integer' },
                  code: { type: 'string' },
                  message: { type: 'string' }
                }
              }
            }
          }
        ]
      }
    }
  }
}

function rejectRepeatedIds (messages) {
  const seen = new Set()
  for (const { message_id: messageId } of messages) {
    if (seen.has(messageId)) {
      throw gatewayError('GW_ERR_INVALID_BODY', `message_id ${JSON.stringify(messageId)} appears more than once in messages`)
    }
    seen.add(messageId)
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

  app.post('/send/batch', {
    config: { userScoped: true },
    bodyLimit: SEND_BATCH_BODY_LIMIT_BYTES,
    schema: { body: sendBatchBody, response: replies(200, sendBatchReply) }
  }, async (request) => {
    const { user_id: userId, messages } = request.body
    rejectRepeatedIds(messages)

    // One at a time, so that WhatsApp gets the messages in the given order.
    const results = []
    for (const { message_id: messageId, to, text } of messages) {
      try {
        const answer = await sender.send(userId, { messageId, to, text })
        results.push({ message_id: messageId, ...answer })
      } catch (error) {
        const { status, code, message } = toErrorReply(error, request.routeOptions.bodyLimit)
        const context = { userId, messageId, code, statusCode: status }
        if (status >= 500) {
          request.log.error({ ...context, err: error }, 'batch item failed')
        } else {
          request.log.info({ ...context, reason: message }, 'batch item rejected')
        }
        results.push({ message_id: messageId, error: { status, code, message } })
      }
    }
    return { results }
  })
}
