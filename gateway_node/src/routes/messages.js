// POST /send and POST /send/batch.
//
// The batch route lets Django send several queued messages, of one user or
// of several, in one signed request, which saves the per-request overhead.
// Each item goes through MessageSender.send as a /send would: one user's
// items one after another, different users' at the same time. An item's
// result is what /send would have returned for that item alone. The
// response waits at most WA_SEND_BATCH_WAIT_MS, or the body's shorter
// wait_ms, so one user's stuck client holds up the other users of a batch
// for that long at most. Django sets wait_ms below its own request timeout,
// so the response arrives before Django gives up on the request.

import { setTimeout as sleep } from 'node:timers/promises'

import { gatewayError } from '../errors.js'
import { reasonForLog } from '../logger.js'
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

// An item's user_id is optional here because the top-level user_id is the
// default for items without one. An item with neither is rejected in the
// handler, which names its index.
const sendBatchBody = {
  type: 'object',
  required: ['messages'],
  properties: {
    user_id: userIdBody,
    wait_ms: { type: 'integer', minimum: 100, maximum: 600000 },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_SEND_BATCH,
      items: {
        type: 'object',
        required: ['message_id', 'to', 'text'],
        properties: { user_id: userIdBody, ...messageProperties }
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

// Returns each item's user: its own user_id, else the body's.
function itemUserIds (messages, defaultUserId) {
  return messages.map((message, index) => {
    const userId = message.user_id ?? defaultUserId
    if (userId === undefined) {
      throw gatewayError('GW_ERR_INVALID_BODY', `messages/${index} must have property 'user_id' when the body has no user_id`)
    }
    return userId
  })
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

export default async function messageRoutes (app, { sender, config }) {
  const batchWaitMs = config.sendBatchWaitMs
  app.post('/send', {
    config: { userScoped: true },
    schema: { body: sendBody, response: replies(202, sendReply) }
  }, async (request, reply) => {
    const { user_id: userId, message_id: messageId, to, text } = request.body
    const answer = await sender.send(userId, { messageId, to, text })
    reply.code(202)
    return answer
  })

  // Not userScoped: the user_id may be on each item instead of the body.
  app.post('/send/batch', {
    bodyLimit: SEND_BATCH_BODY_LIMIT_BYTES,
    schema: { body: sendBatchBody, response: replies(200, sendBatchReply) }
  }, async (request) => {
    const { user_id: defaultUserId, messages, wait_ms: callerWaitMs } = request.body
    const waitMs = Math.min(batchWaitMs, callerWaitMs ?? batchWaitMs)
    const userIds = itemUserIds(messages, defaultUserId)
    rejectRepeatedIds(messages)

    // Each user's items go one at a time, so that WhatsApp gets them in the
    // given order. Users go at the same time, so a slow client holds up the
    // other users only until the wait ends. An unknown user or
    // a client that is not ready fails only its own items.
    const results = new Array(messages.length)
    let answered = false
    const sendItem = async (index) => {
      const { message_id: messageId, to, text } = messages[index]
      const userId = userIds[index]
      try {
        const answer = await sender.send(userId, { messageId, to, text })
        results[index] = { message_id: messageId, ...answer }
      } catch (error) {
        const { status, code, message } = toErrorReply(error, request.routeOptions.bodyLimit)
        const context = { userId, messageId, code, statusCode: status }
        if (status >= 500) {
          request.log.error({ ...context, err: error }, 'batch item failed')
        } else {
          request.log.info({ ...context, reason: reasonForLog(code, message) }, 'batch item rejected')
        }
        results[index] = { message_id: messageId, error: { status, code, message } }
      }
    }
    const byUser = new Map()
    for (const [index, userId] of userIds.entries()) {
      if (!byUser.has(userId)) byUser.set(userId, [])
      byUser.get(userId).push(index)
    }
    const chains = [...byUser.values()].map(async (indexes) => {
      for (const index of indexes) {
        // Once the response is sent, a user's later items wait for Django
        // to send them again, so they cannot go before the one still running.
        if (answered) return
        await sendItem(index)
      }
    })
    const waited = new AbortController()
    await Promise.race([
      Promise.all(chains),
      sleep(waitMs, undefined, { signal: waited.signal }).catch(() => {})
    ])
    waited.abort()
    answered = true

    for (const [index, result] of results.entries()) {
      if (result) continue
      const messageId = messages[index].message_id
      const error = gatewayError('GW_ERR_SEND_TIMEOUT', messageId, waitMs)
      request.log.warn({ userId: userIds[index], messageId, waitMs }, 'batch item not confirmed in time')
      results[index] = { message_id: messageId, error: { status: error.statusCode, code: error.code, message: error.message } }
    }
    return { results }
  })
}
