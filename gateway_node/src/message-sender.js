// POST /send: validation, number lookup and idempotent sending.
//
// Django may repeat a /send (a Celery retry after a timeout, two workers
// racing). The first request claims the message_id in SQLite before the
// message goes out, so every repeat gets the first response and WhatsApp
// gets the message once, also after a gateway restart.

import { createHash } from 'node:crypto'

import { GatewayError, gatewayError, isGatewayCode } from './errors.js'
import { jidKind, normalizeJid, toUserJid } from './jid.js'

// Engine errors after which the message certainly did not leave.
const NOT_SENT_CODES = new Set(['GW_ERR_CLIENT_NOT_READY', 'GW_ERR_NOT_ON_WHATSAPP', 'GW_ERR_INVALID_RECIPIENT'])

function requestHash (toJid, text) {
  return createHash('sha256').update(`${toJid}\n${text}`).digest('hex')
}

function answerOf (row) {
  return { gateway_message_id: row.gateway_message_id, to_jid: row.to_jid }
}

export class MessageSender {
  #sessions
  #sends
  #metrics
  #logger
  #timeoutMs
  // `${userId}:${messageId}` -> promise of the response, while sending.
  #inFlight = new Map()

  constructor ({ sessions, sends, metrics, logger, timeoutMs }) {
    this.#sessions = sessions
    this.#sends = sends
    this.#metrics = metrics
    this.#logger = logger
    this.#timeoutMs = timeoutMs
  }

  /** Sends `text` to `to` once per message_id and returns { gateway_message_id, to_jid }. */
  async send (userId, { messageId, to, text }) {
    try {
      return await this.#send(userId, { messageId, to, text })
    } catch (error) {
      this.#metrics?.sendFailures.inc({ code: error.code ?? 'GW_ERR_INTERNAL' })
      throw error
    }
  }

  async #send (userId, { messageId, to, text }) {
    let toJid
    try {
      toJid = toUserJid(to)
    } catch (error) {
      if (error.code !== 'GW_ERR_INVALID_RECIPIENT') throw error
      throw new GatewayError('GW_ERR_INVALID_RECIPIENT', [], { message: error.message })
    }
    const hash = requestHash(toJid, text)
    const key = `${userId}:${messageId}`

    const existing = this.#sends.find(userId, messageId)
    if (existing) {
      if (existing.request_hash !== hash) throw gatewayError('GW_ERR_IDEMPOTENCY_CONFLICT', messageId)
      if (existing.state === 'sent') return answerOf(existing)
      const running = this.#inFlight.get(key)
      if (running) return running
      throw gatewayError('GW_ERR_SEND_IN_DOUBT', messageId)
    }

    const engine = this.#sessions.liveEngine(userId)
    if (engine.state !== 'connected') throw gatewayError('GW_ERR_CLIENT_NOT_READY', userId, engine.state)

    // find(), begin() and the map entry run without an await between them,
    // so a concurrent identical request always finds one or the other.
    this.#sends.begin(userId, messageId, hash)
    const running = this.#deliver(engine, userId, { messageId, to, toJid, text })
    this.#inFlight.set(key, running)
    running.catch(() => {}).finally(() => this.#inFlight.delete(key))
    return running
  }

  #deliver (engine, userId, request) {
    let ended = false
    const endSend = () => {
      if (ended) return
      ended = true
      this.#sessions.endSend(userId)
    }
    this.#sessions.beginSend(userId)

    const work = this.#lookupAndSend(engine, userId, request).finally(endSend)

    let timer
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => {
        // The send may still finish. Its row stays `sending` until then, so
        // a repeat meanwhile gets GW_ERR_SEND_IN_DOUBT, not a second send.
        endSend()
        this.#logger.warn({ userId, messageId: request.messageId, timeoutMs: this.#timeoutMs }, 'send timed out')
        reject(gatewayError('GW_ERR_SEND_TIMEOUT', request.messageId, this.#timeoutMs))
      }, this.#timeoutMs)
    })
    work.catch(() => {}).finally(() => clearTimeout(timer))
    return Promise.race([work, timeout])
  }

  async #lookupAndSend (engine, userId, { messageId, to, toJid, text }) {
    try {
      let target = toJid
      // A phone number may not be the JID WhatsApp uses for that account
      // (Brazilian numbers registered before the ninth digit, for one), so
      // ask WhatsApp. A JID given by the caller came from WhatsApp already.
      if (jidKind(toJid) === 'user' && !String(to).includes('@')) {
        const digits = toJid.split('@')[0]
        const found = await engine.lookup(digits)
        if (!found?.exists) throw gatewayError('GW_ERR_NOT_ON_WHATSAPP', `+${digits}`)
        target = normalizeJid(found.jid) ?? toJid
      }

      const result = await engine.send({ to: target, text })
      const sentJid = normalizeJid(result.toJid) ?? target
      this.#sends.markSent(userId, messageId, result.id, sentJid)
      this.#metrics?.sends.inc()
      this.#logger.debug({ userId, messageId, gatewayMessageId: result.id }, 'message sent')
      return { gateway_message_id: result.id, to_jid: sentJid }
    } catch (error) {
      throw this.#failed(error, engine, userId, messageId)
    }
  }

  #failed (error, engine, userId, messageId) {
    // NOTE: an engine error outside NOT_SENT_CODES (a socket closing during
    // the send, say) may come after WhatsApp took the message. The claim is
    // dropped all the same so that Django's retry can send, which in that
    // rare case delivers the message twice.
    this.#sends.forget(userId, messageId)

    if (error instanceof GatewayError) return error
    if (error.code === 'GW_ERR_CLIENT_NOT_READY') {
      return gatewayError('GW_ERR_CLIENT_NOT_READY', userId, engine.state)
    }
    if (NOT_SENT_CODES.has(error.code) && isGatewayCode(error.code)) {
      return new GatewayError(error.code, [], { message: error.message })
    }
    this.#logger.error({ err: error, userId, messageId }, 'engine failed to send a message')
    return new GatewayError('GW_ERR_ENGINE_FAILED', [userId, 'the message was not sent'], { cause: error })
  }
}
