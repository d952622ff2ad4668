// In-process WhatsApp simulator, the development and test engine.
//
// It behaves like a real client seen from the gateway: QR strings in
// WhatsApp's shape that rotate and run out, pairing by scan(), acks that go
// sent -> delivered -> read, inbound messages from phone-number and LID
// senders, echoes of our own sends, and the disconnect reasons of the real
// libraries. An idle session has no timers and no buffers, so a node can
// keep thousands of them.

import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'

import { jidKind, jidToPhone, normalizeJid, toUserJid } from '../jid.js'

// The paired account, stored in the user's auth so that a restart restores
// the session without a new QR.
const CREDS_KEY = 'sim-creds'

// A dropped connection comes back after a short random pause, as a real
// client's first reconnect attempt does.
const RECONNECT_MIN_MS = 200
const RECONNECT_JITTER_MS = 200

export const DISCONNECT_REASONS = ['network', 'restart', 'replaced', 'banned', 'logged_out', 'fatal']

function engineError (code, message) {
  const error = new Error(message)
  error.code = code
  return error
}

function base64Key () {
  return randomBytes(32).toString('base64')
}

// A stable fake LID for a phone number: 15 digits starting with 1, like
// `100000000000001@lid`.
function lidFor (digits) {
  const hash = createHash('sha256').update(`lid:${digits}`).digest()
  const number = 10n ** 14n + (hash.readBigUInt64BE(0) % 10n ** 14n)
  return `${number}@lid`
}

function messageId (prefix) {
  return prefix + randomBytes(9).toString('hex').toUpperCase()
}

function ackStages (delays, failed) {
  if (failed) {
    return [['sent', delays.sent], ['failed', delays.delivered]]
  }
  return [['sent', delays.sent], ['delivered', delays.delivered], ['read', delays.read]]
}

export class SimEngine extends EventEmitter {
  #auth
  #logger
  #config
  #state = 'starting'
  // { jid, phone, lid, pushName } once paired.
  #me = null
  // { keys, count, timer } while QR codes are shown.
  #pairing = null
  // gateway_message_id -> { chatJid, stages, index, sentAt, timer }, created
  // on the first send and dropped when the last ack has gone out.
  #pendingAcks = null
  #reconnectTimer = null
  #mappedLids = null

  constructor ({ auth, logger, config }) {
    super()
    this.#auth = auth
    this.#logger = logger
    this.#config = config
  }

  get state () {
    return this.#state
  }

  async start () {
    this.#state = 'starting'
    const saved = await this.#auth.get(CREDS_KEY)
    if (saved) {
      this.#me = JSON.parse(saved)
      this.#logger.debug('sim session restored from saved auth')
      this.#open()
      return
    }
    this.#showNextQr()
  }

  /** Pairs the pending QR code as the phone with number `phone` would. */
  async scan (phone) {
    if (this.#state !== 'qr_pending') {
      throw engineError('GW_ERR_QR_NOT_PENDING', `No QR code is pending (state ${this.#state}).`)
    }
    const jid = toUserJid(phone)
    if (jidKind(jid) !== 'user') {
      throw engineError('GW_ERR_INVALID_PHONE', `${phone} is not a phone number.`)
    }

    clearTimeout(this.#pairing.timer)
    this.#pairing = null
    const digits = jid.split('@')[0]
    this.#me = {
      jid,
      phone: jidToPhone(jid),
      lid: lidFor(digits),
      pushName: `Sim ${digits.slice(-4)}`
    }
    await this.#auth.set({ [CREDS_KEY]: JSON.stringify(this.#me) })

    // A real client now gets a 515 "restart required" and reconnects at
    // once. That restart is not a disconnect, so it emits nothing.
    this.#open()
  }

  async send ({ to, text }) {
    this.#requireConnected()
    const chatJid = normalizeJid(to)
    const kind = jidKind(chatJid)
    if (kind !== 'user' && kind !== 'lid') {
      throw engineError('GW_ERR_INVALID_RECIPIENT', `${to} cannot receive direct messages.`)
    }

    const id = messageId('3EB0')
    const digits = chatJid.split('@')[0]
    const unregistered = kind === 'user' && this.#config.unregistered.has(digits)

    // WhatsApp echoes our own sends back as from_me messages before the
    // send call returns, and the gateway must recognise and drop them.
    this.emit('message', this.#messageData({
      id,
      chatJid,
      fromMe: true,
      text,
      peer: { jid: chatJid, phone: jidToPhone(chatJid), lid: kind === 'lid' ? chatJid : null }
    }))

    this.#pendingAcks ??= new Map()
    const pending = {
      chatJid,
      stages: ackStages(this.#config.ackDelaysMs, unregistered),
      index: 0,
      sentAt: Date.now(),
      timer: null
    }
    this.#pendingAcks.set(id, pending)
    this.#armAck(id, pending)
    return { id, toJid: chatJid }
  }

  /**
   * Delivers a message as if `from` had sent it. `from` is an E.164 number,
   * a user JID or a LID. `fromLid` makes WhatsApp address the chat by that
   * LID, with `from` as the known phone number. `fromMe` delivers a message
   * typed on the subscriber's phone to `from`.
   */
  deliver (from, text, { id, fromLid, fromMe = false, pushName = null } = {}) {
    this.#requireConnected()

    const fromJid = toUserJid(from)
    let lid = jidKind(fromJid) === 'lid' ? fromJid : null
    if (fromLid) {
      lid = normalizeJid(fromLid)
      if (jidKind(lid) !== 'lid') {
        throw engineError('GW_ERR_INVALID_BODY', `from_lid ${JSON.stringify(fromLid)} is not a LID such as 100000000000001@lid.`)
      }
    }
    const phone = jidToPhone(fromJid)
    const peer = { jid: phone ? fromJid : lid, phone, lid }

    if (phone && lid) this.#announceLid(lid, phone, fromJid)

    const data = this.#messageData({
      id: id || messageId(fromMe ? '3A' : 'AC'),
      // A LID-addressed chat keeps the LID as its address.
      chatJid: lid ?? fromJid,
      fromMe,
      text,
      peer,
      pushName
    })
    this.emit('message', data)
    return { id: data.gateway_message_id }
  }

  /** Drops the connection the way the real library reports `reason`. */
  disconnect (reason) {
    if (this.#state !== 'connected' && this.#state !== 'disconnected') {
      throw engineError('GW_ERR_CLIENT_NOT_READY', `Only a paired session can be disconnected (state ${this.#state}).`)
    }

    switch (reason) {
      case 'network':
        this.#pauseAcks()
        this.#state = 'disconnected'
        this.emit('disconnected', { reason: 'network', willReconnect: true })
        clearTimeout(this.#reconnectTimer)
        this.#reconnectTimer = setTimeout(() => {
          this.#reconnectTimer = null
          if (this.#state === 'disconnected') this.#open()
        }, RECONNECT_MIN_MS + Math.random() * RECONNECT_JITTER_MS)
        this.#reconnectTimer.unref()
        return
      case 'restart':
        this.#pauseAcks()
        this.#open()
        return
      case 'replaced':
      case 'banned':
      case 'fatal':
        this.#teardown()
        this.#state = 'failed'
        this.emit('disconnected', { reason, willReconnect: false })
        return
      case 'logged_out':
        this.#teardown()
        this.#state = 'logged_out'
        this.emit('logged_out', { reason: 'device_removed' })
        return
      default:
        throw engineError('GW_ERR_INVALID_BODY', `Unknown disconnect reason ${JSON.stringify(reason)}; use one of ${DISCONNECT_REASONS.join(', ')}.`)
    }
  }

  async lookup (digits) {
    this.#requireConnected()
    const number = String(digits).replace(/\D/g, '')
    if (this.#config.unregistered.has(number)) return { exists: false, jid: null }
    return { exists: true, jid: `${number}@s.whatsapp.net` }
  }

  async logout () {
    this.#teardown()
    this.#state = 'logged_out'
    this.emit('logged_out', { reason: 'requested' })
  }

  async stop () {
    this.#teardown()
    if (this.#state === 'stopped') return
    this.#state = 'stopped'
    this.emit('disconnected', { reason: 'stopped', willReconnect: false })
  }

  #requireConnected () {
    if (this.#state !== 'connected') {
      throw engineError('GW_ERR_CLIENT_NOT_READY', `The sim client is not connected (state ${this.#state}).`)
    }
  }

  #open () {
    this.#state = 'connected'
    this.emit('connected', {
      jid: this.#me.jid,
      phone: this.#me.phone,
      pushName: this.#me.pushName,
      lid: this.#me.lid
    })
    this.#resumeAcks()
  }

  #showNextQr () {
    this.#pairing ??= { keys: `${base64Key()},${base64Key()},${base64Key()}`, count: 0, timer: null }
    const { qrMax, qrTtlMs } = this.#config

    if (this.#pairing.count >= qrMax) {
      this.#pairing = null
      this.#state = 'qr_expired'
      this.emit('disconnected', { reason: 'qr_timeout', willReconnect: false })
      return
    }

    this.#pairing.count += 1
    const ttl = this.#pairing.count === 1 ? qrTtlMs.first : qrTtlMs.next
    // WhatsApp's shape: a fresh server ref, then the same noise public key,
    // identity public key and advertising secret for every rotation.
    const ref = `2@${randomBytes(48).toString('base64')}`
    this.#state = 'qr_pending'
    this.emit('qr', { qr: `${ref},${this.#pairing.keys}`, expiresAt: new Date(Date.now() + ttl) })

    this.#pairing.timer = setTimeout(() => this.#showNextQr(), ttl)
    this.#pairing.timer.unref()
  }

  #messageData ({ id, chatJid, fromMe, text, peer, pushName = null }) {
    const sender = fromMe
      ? { jid: this.#me.jid, phone: this.#me.phone, lid: this.#me.lid }
      : peer
    return {
      gateway_message_id: id,
      chat_jid: chatJid,
      chat_type: 'direct',
      sender_jid: fromMe ? this.#me.jid : chatJid,
      sender_phone: sender.phone,
      sender_lid: sender.lid,
      peer_jid: peer.jid,
      peer_phone: peer.phone,
      peer_lid: peer.lid,
      push_name: fromMe ? this.#me.pushName : pushName,
      from_me: fromMe,
      kind: 'text',
      text,
      quoted_id: null,
      metadata: {},
      media: null,
      timestamp: new Date().toISOString(),
      offline: false
    }
  }

  #announceLid (lid, phone, jid) {
    this.#mappedLids ??= new Set()
    if (this.#mappedLids.has(lid)) return
    this.#mappedLids.add(lid)
    this.emit('lid_mapped', { lid, phone, jid })
  }

  #armAck (id, pending) {
    const [, dueMs] = pending.stages[pending.index]
    const delay = Math.max(0, pending.sentAt + dueMs - Date.now())
    pending.timer = setTimeout(() => this.#fireAck(id, pending), delay)
    pending.timer.unref()
  }

  #fireAck (id, pending) {
    pending.timer = null
    if (this.#state !== 'connected') return

    const [status] = pending.stages[pending.index]
    this.emit('ack', {
      gateway_message_id: id,
      chat_jid: pending.chatJid,
      status,
      error: status === 'failed' ? 'The recipient has no WhatsApp account.' : null,
      timestamp: new Date().toISOString()
    })

    pending.index += 1
    if (pending.index < pending.stages.length) {
      this.#armAck(id, pending)
      return
    }
    this.#pendingAcks.delete(id)
    if (this.#pendingAcks.size === 0) this.#pendingAcks = null
  }

  #pauseAcks () {
    if (!this.#pendingAcks) return
    for (const pending of this.#pendingAcks.values()) {
      clearTimeout(pending.timer)
      pending.timer = null
    }
  }

  #resumeAcks () {
    if (!this.#pendingAcks) return
    for (const [id, pending] of this.#pendingAcks) {
      if (!pending.timer) this.#armAck(id, pending)
    }
  }

  #teardown () {
    if (this.#pairing) clearTimeout(this.#pairing.timer)
    this.#pairing = null
    clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = null
    this.#pauseAcks()
    // NOTE: acks still pending are dropped, so a message sent within the
    // ack delays before a stop stays `sent` or `delivered` for good.
    this.#pendingAcks = null
    this.#mappedLids = null
  }
}

export function createEngine (options) {
  return new SimEngine(options)
}
