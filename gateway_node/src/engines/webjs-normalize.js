// Pure mappings from whatsapp-web.js 1.34.7 events to the gateway's engine
// events.
//
// The library is CommonJS and loads puppeteer, so its constants are copied
// here rather than imported. The tests compare them with the package's own
// `MessageAck` and `WAState`.

import { jidKind, jidToPhone, normalizeJid } from '../jid.js'
import {
  EMPTY_IDENTITY,
  SILENT_LOGGER,
  buildMessageEvent,
  epochToIso,
  isSelfJid,
  selfIdentity
} from './normalize-common.js'

// `message_ack` value (MessageAck in src/util/Constants.js) → ack status.
// ACK_PENDING is the state before the server ack, so it produces no event.
const ACK_STATUS = new Map([
  [-1, 'failed'],
  [0, null],
  [1, 'sent'],
  [2, 'delivered'],
  [3, 'read'],
  [4, 'read']
])

// `disconnected` reason (a WAState, 'LOGOUT' or the QR limit message) → the
// event and state the engine ends in. whatsapp-web.js destroys the client
// after each of these except LOGOUT, so none of them reconnects.
const QR_LIMIT_REASON = 'Max qrcode retries reached'
const DEVICE_REMOVED = { event: 'logged_out', state: 'logged_out', reason: 'device_removed' }
const BANNED = { event: 'disconnected', state: 'failed', reason: 'banned' }
const DISCONNECT_OUTCOMES = new Map([
  ['LOGOUT', DEVICE_REMOVED],
  ['UNPAIRED', DEVICE_REMOVED],
  ['UNPAIRED_IDLE', DEVICE_REMOVED],
  ['CONFLICT', { event: 'disconnected', state: 'failed', reason: 'replaced' }],
  ['TOS_BLOCK', BANNED],
  ['SMB_TOS_BLOCK', BANNED],
  ['PROXYBLOCK', BANNED],
  [QR_LIMIT_REASON, { event: 'disconnected', state: 'qr_expired', reason: 'qr_timeout' }]
])
const FATAL_OUTCOME = { event: 'disconnected', state: 'failed', reason: 'fatal' }

// Message `type` (MessageTypes) → message kind. Types missing here and from
// NON_MESSAGE_TYPES are reported as 'unknown'.
const TYPE_KIND = {
  chat: 'text',
  image: 'image',
  video: 'video',
  ptv: 'video',
  audio: 'audio',
  ptt: 'audio',
  document: 'document',
  sticker: 'sticker',
  location: 'location',
  vcard: 'contact',
  multi_vcard: 'contact',
  buttons_response: 'interactive_reply',
  list_response: 'interactive_reply',
  template_button_reply: 'interactive_reply',
  ciphertext: 'undecryptable'
}
const MEDIA_KINDS = new Set(['image', 'video', 'audio', 'document', 'sticker'])

// Types that are notifications or updates of other messages, not messages.
const NON_MESSAGE_TYPES = new Set([
  'revoked',
  'protocol',
  'reaction',
  'album',
  'e2e_notification',
  'notification',
  'notification_template',
  'gp2',
  'group_notification',
  'broadcast_notification',
  'call_log',
  'debug'
])

/** Converts seconds or milliseconds since the epoch into ISO 8601, or null. */
export function toIsoTimestamp (value) {
  const number = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value
  return epochToIso(number)
}

// whatsapp-web.js gives ids either as strings or as `{_serialized}` objects.
function widString (value) {
  if (typeof value === 'string') return value
  return typeof value?._serialized === 'string' ? value._serialized : null
}

/**
 * Serialises a message key the way whatsapp-web.js does for `id._serialized`
 * (`<fromMe>_<chat>_<id>[_<participant>]`), so every event about a message
 * carries the same id that send() returned.
 */
export function serializeKey (key) {
  if (!key) return null
  if (typeof key === 'string') return key || null
  if (typeof key._serialized === 'string' && key._serialized) return key._serialized

  const remote = widString(key.remote)
  if (!remote || !key.id) return null
  const participant = widString(key.participant)
  const parts = [Boolean(key.fromMe), remote, key.id]
  if (participant) parts.push(participant)
  return parts.join('_')
}

/** Reads the chat JID of a message (`id.remote`, else the other party). */
export function readChatJid (message) {
  const remote = widString(message?.id?.remote)
  const fallback = message?.fromMe || message?.id?.fromMe ? message?.to : message?.from
  return normalizeJid(remote ?? widString(fallback))
}

// Builds a person's identity. For a LID, the phone comes from the
// LID-to-phone pairs the engine looked up (`phoneForLid`).
function identify (jid, phoneForLid) {
  const kind = jidKind(jid)
  if (kind === 'user') return { jid, phone: jidToPhone(jid), lid: null }
  if (kind !== 'lid') return EMPTY_IDENTITY

  const phoneJid = normalizeJid(phoneForLid?.get(jid))
  return { jid, phone: jidToPhone(phoneJid), lid: jid }
}

/**
 * Reads the chat and the people of a message. Messages the gateway must
 * ignore give `{ ignored: reason }`: status posts, channels, broadcast lists,
 * unknown servers and the subscriber's chat with themself.
 */
export function readParties (message, { self, phoneForLid } = {}) {
  const remote = widString(message?.id?.remote) ?? widString(message?.from)
  if (message?.isStatus || remote === 'status@broadcast') return { ignored: 'chat_status' }

  const chatJid = readChatJid(message)
  const kind = jidKind(chatJid)
  const fromMe = Boolean(message.fromMe ?? message.id?.fromMe)

  if (kind === 'group') {
    const author = normalizeJid(widString(message.author) ?? widString(message.id?.participant))
    return {
      chatJid,
      chatType: 'group',
      fromMe,
      peer: EMPTY_IDENTITY,
      sender: fromMe ? selfIdentity(self) : identify(author, phoneForLid)
    }
  }
  if (kind !== 'user' && kind !== 'lid') return { ignored: `chat_${kind}` }
  if (isSelfJid(chatJid, self)) return { ignored: 'own_chat' }

  const peer = identify(chatJid, phoneForLid)
  return {
    chatJid,
    chatType: 'direct',
    fromMe,
    peer,
    sender: fromMe ? selfIdentity(self) : peer
  }
}

function readMedia (data) {
  return {
    mimetype: data.mimetype || null,
    filename: data.filename || null,
    size: Number.isFinite(data.size) ? data.size : null,
    sha256: data.filehash || null
  }
}

function readText (message, kind, data) {
  if (kind === 'text' || kind === 'interactive_reply') return message.body
  if (MEDIA_KINDS.has(kind)) return data.caption ?? (message.hasMedia ? message.body : null)
  if (kind === 'location') return message.location?.description
  if (kind === 'contact') return data.vcardFormattedName
  return null
}

function readKindMetadata (message, kind, data) {
  if (kind === 'interactive_reply') {
    const selectedId = message.selectedButtonId ?? message.selectedRowId ?? data.selectedId
    return { selected_id: selectedId || null }
  }
  if (kind === 'location') {
    return { latitude: message.location?.latitude, longitude: message.location?.longitude }
  }
  if (kind === 'contact') return { vcards: message.vCards ?? [] }
  if (kind === 'undecryptable') return { reason: 'decrypt_failed' }
  return {}
}

/**
 * Reads kind, text, quoted id, metadata and media of a whatsapp-web.js
 * Message. Media is described, never downloaded.
 */
export function readContent (message) {
  const data = message._data ?? {}
  const kind = TYPE_KIND[message.type] ?? 'unknown'
  const metadata = {
    is_ephemeral: Boolean(message.isEphemeral || data.ephemeralDuration > 0),
    is_view_once: Boolean(data.isViewOnce),
    ...readKindMetadata(message, kind, data)
  }

  let media = null
  if (MEDIA_KINDS.has(kind)) {
    media = readMedia(data)
    metadata.mimetype = media.mimetype
    metadata.filename = media.filename
  }

  return {
    kind,
    text: readText(message, kind, data) || null,
    quotedId: data.quotedStanzaID || null,
    metadata,
    media
  }
}

/**
 * Maps a `message_create` (or `message_ciphertext_failed`) Message to a
 * `message` event, or returns null when the gateway ignores it.
 */
export function mapMessage (message, context = {}) {
  const logger = context.logger ?? SILENT_LOGGER
  const id = serializeKey(message?.id)
  if (!id) {
    logger.debug({}, 'ignored message without id')
    return null
  }
  if (NON_MESSAGE_TYPES.has(message.type)) return null

  const parties = readParties(message, context)
  if (parties.ignored) {
    logger.debug({ messageId: id, reason: parties.ignored }, 'ignored message')
    return null
  }

  return buildMessageEvent({
    id,
    parties,
    content: readContent(message),
    pushName: message._data?.notifyName,
    timestamp: toIsoTimestamp(message.timestamp ?? message._data?.t),
    offline: false
  })
}

function isMessageChat (jid) {
  return ['user', 'lid', 'group'].includes(jidKind(jid))
}

/** Maps `message_ack(message, ack)` for messages we sent, or returns null. */
export function mapAck (message, ack, context = {}) {
  const logger = context.logger ?? SILENT_LOGGER
  const id = serializeKey(message?.id)
  if (!id || !(message.fromMe ?? message.id?.fromMe)) return null

  const chatJid = readChatJid(message)
  if (!isMessageChat(chatJid)) return null
  if (!ACK_STATUS.has(ack)) {
    logger.warn({ messageId: id, ack }, 'ignored unknown message ack')
    return null
  }

  const status = ACK_STATUS.get(ack)
  if (!status) return null
  return { gateway_message_id: id, chat_jid: chatJid, status, error: null, timestamp: null }
}

/**
 * Maps `message_edit(message, newBody, prevBody)`. The library emits it for
 * every body change. A change from an empty body is a late decryption, not
 * an edit, and gives null.
 */
export function mapEdit (message, newBody, prevBody) {
  const id = serializeKey(message?.id)
  const chatJid = readChatJid(message)
  if (!id || !isMessageChat(chatJid)) return null
  if (typeof newBody !== 'string' || !prevBody || newBody === prevBody) return null

  return { gateway_message_id: id, chat_jid: chatJid, change: 'edited', text: newBody }
}

/**
 * Maps `message_revoke_everyone(message, revokedMessage)`. The revoked
 * message keeps the id of the original.
 */
export function mapRevoke (message) {
  const id = serializeKey(message?.id)
  const chatJid = readChatJid(message)
  if (!id || !isMessageChat(chatJid)) return null

  return { gateway_message_id: id, chat_jid: chatJid, change: 'revoked', text: null }
}

/** Maps a `message_reaction` Reaction. An empty `reaction` is a removal. */
export function mapReaction (reaction) {
  const targetId = serializeKey(reaction?.msgId)
  const chatJid = normalizeJid(widString(reaction?.msgId?.remote))
  if (!targetId || !isMessageChat(chatJid)) return null

  return {
    gateway_message_id: targetId,
    chat_jid: chatJid,
    sender_jid: normalizeJid(widString(reaction.senderId)),
    emoji: reaction.reaction || ''
  }
}

/**
 * Maps a `disconnected` reason to `{ event, state, reason }`: the engine event
 * to emit, the state to end in and the reason it carries.
 */
export function classifyDisconnect (reason) {
  return DISCONNECT_OUTCOMES.get(reason) ?? FATAL_OUTCOME
}

/** Maps `getContactLidAndPhone` results (`{lid, pn}`) to `lid_mapped` data. */
export function mapLidAndPhone (entries) {
  const mappings = []
  for (const entry of entries ?? []) {
    const lid = normalizeJid(entry?.lid)
    const jid = normalizeJid(entry?.pn)
    if (jidKind(lid) === 'lid' && jidToPhone(jid)) {
      mappings.push({ lid, phone: jidToPhone(jid), jid })
    }
  }
  return mappings
}
