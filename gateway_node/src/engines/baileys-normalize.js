// Pure mappings from Baileys events to the gateway's engine events.
//
// Written against baileys 7.0.0-rc14. Fields that only baileys 6.7 sets
// (`senderPn`, `senderLid`, `participantPn`, `participantLid` on message keys
// and the `chats.phoneNumberShare` event) are read too, so stored fixtures and
// history from either version map the same way.

import { DisconnectReason, getContentType, proto } from 'baileys'

import { jidKind, jidToPhone, normalizeJid } from '../jid.js'
import {
  EMPTY_IDENTITY,
  SILENT_LOGGER,
  buildMessageEvent,
  epochToIso,
  isSelfJid,
  selfIdentity
} from './normalize-common.js'

const { Status, StubType } = proto.WebMessageInfo
const ProtocolType = proto.Message.ProtocolMessage.Type
const SecretEncType = proto.Message.SecretEncryptedMessage.SecretEncType

// proto.WebMessageInfo.Status → ack status. PENDING is the state before the
// server ack, so it produces no event.
const ACK_STATUS = new Map([
  [Status.ERROR, 'failed'],
  [Status.PENDING, null],
  [Status.SERVER_ACK, 'sent'],
  [Status.DELIVERY_ACK, 'delivered'],
  [Status.READ, 'read'],
  [Status.PLAYED, 'read']
])

// Close status code → what the engine does next. `retry` reconnects like
// `reconnect` but only a few times in a row before the session fails.
const CLOSE_POLICY = new Map([
  [DisconnectReason.loggedOut, { action: 'logout', reason: 'device_removed' }],
  [DisconnectReason.forbidden, { action: 'fail', reason: 'banned' }],
  [DisconnectReason.connectionReplaced, { action: 'fail', reason: 'replaced' }],
  [DisconnectReason.multideviceMismatch, { action: 'fail', reason: 'fatal' }],
  [DisconnectReason.restartRequired, { action: 'restart', reason: 'restart' }],
  [DisconnectReason.connectionClosed, { action: 'reconnect', reason: 'network' }],
  [DisconnectReason.timedOut, { action: 'reconnect', reason: 'network' }],
  [DisconnectReason.unavailableService, { action: 'reconnect', reason: 'network' }],
  [DisconnectReason.badSession, { action: 'retry', reason: 'network' }]
])
const UNKNOWN_CLOSE = { action: 'retry', reason: 'network' }
const QR_TIMEOUT_CLOSE = { action: 'qr_timeout', reason: 'qr_timeout' }

// Content type → message kind. Types missing here are reported as 'unknown'.
const CONTENT_KIND = {
  conversation: 'text',
  extendedTextMessage: 'text',
  imageMessage: 'image',
  videoMessage: 'video',
  ptvMessage: 'video',
  audioMessage: 'audio',
  documentMessage: 'document',
  stickerMessage: 'sticker',
  locationMessage: 'location',
  liveLocationMessage: 'location',
  contactMessage: 'contact',
  contactsArrayMessage: 'contact',
  buttonsResponseMessage: 'interactive_reply',
  listResponseMessage: 'interactive_reply',
  templateButtonReplyMessage: 'interactive_reply',
  interactiveResponseMessage: 'interactive_reply'
}

// Content types that update another message or the chat and are not
// messages of their own.
const NON_MESSAGE_CONTENT = new Set([
  'pollUpdateMessage',
  'encReactionMessage',
  'encEventResponseMessage',
  'keepInChatMessage',
  'pinInChatMessage'
])

// Wrapper field → the metadata flag it sets. Wrappers nest (an ephemeral
// view-once message), so they are unwrapped until none is left.
const WRAPPERS = [
  ['ephemeralMessage', 'is_ephemeral'],
  ['viewOnceMessage', 'is_view_once'],
  ['viewOnceMessageV2', 'is_view_once'],
  ['viewOnceMessageV2Extension', 'is_view_once'],
  ['documentWithCaptionMessage', null],
  ['editedMessage', null],
  ['associatedChildMessage', null],
  ['groupStatusMessage', null],
  ['groupStatusMessageV2', null]
]
const MAX_WRAPPER_DEPTH = 6

// Substring of a failed decryption's stub parameter → metadata.reason.
const DECRYPT_FAILURES = [
  ['bad mac', 'bad_mac'],
  ['no session record', 'no_session'],
  ['no matching sessions', 'no_session'],
  ['key used already or never filled', 'missing_keys']
]
const MESSAGE_ABSENT = 'message absent from node'

function enumNumber (values, value) {
  if (typeof value === 'string') return values[value]
  return value
}

function toEpochNumber (value) {
  if (value == null) return null
  if (typeof value === 'number') return value
  if (typeof value === 'bigint') return Number(value)
  if (typeof value === 'string') {
    return /^\d+$/.test(value.trim()) ? Number(value) : null
  }
  if (typeof value === 'object' && 'low' in value && 'high' in value) {
    // A protobuf Long: high·2³² plus low read as unsigned 32 bits.
    const high = value.unsigned ? value.high >>> 0 : value.high | 0
    return high * 2 ** 32 + (value.low >>> 0)
  }
  return null
}

/**
 * Converts a WhatsApp timestamp (seconds or milliseconds, as a number, a
 * numeric string or a protobuf Long) into an ISO 8601 UTC string, or null.
 */
export function toIsoTimestamp (value) {
  return epochToIso(toEpochNumber(value))
}

function toByteCount (value) {
  const number = toEpochNumber(value)
  return Number.isFinite(number) ? number : null
}

function toBase64 (value) {
  if (value == null) return null
  if (typeof value === 'string') return value || null
  if (value instanceof Uint8Array) {
    return value.length ? Buffer.from(value).toString('base64') : null
  }
  return null
}

// Builds a person's identity from their JID and the alternate JIDs WhatsApp
// sent along (the phone-number JID for a LID and the other way round).
function identify (jid, alternates, self) {
  const kind = jidKind(jid)
  if (kind !== 'user' && kind !== 'lid') return EMPTY_IDENTITY

  const identity = {
    jid,
    phone: jidToPhone(jid),
    lid: kind === 'lid' ? jid : null
  }
  for (const candidate of alternates) {
    const alternate = normalizeJid(candidate)
    if (!alternate || isSelfJid(alternate, self)) continue

    const alternateKind = jidKind(alternate)
    if (alternateKind === 'user' && !identity.phone) {
      identity.phone = jidToPhone(alternate)
    } else if (alternateKind === 'lid' && !identity.lid) {
      identity.lid = alternate
    }
  }
  return identity
}

function readDirectParties (key, chatJid, self) {
  const alternates = [key.remoteJidAlt, key.senderPn, key.senderLid]
  const peer = identify(chatJid, alternates, self)
  const fromMe = Boolean(key.fromMe)

  return {
    chatJid,
    chatType: 'direct',
    fromMe,
    peer,
    sender: fromMe ? selfIdentity(self) : peer
  }
}

function readGroupParties (message, chatJid, self) {
  const key = message.key
  const fromMe = Boolean(key.fromMe)
  const participant = normalizeJid(key.participant ?? message.participant)
  const alternates = [key.participantAlt, key.participantPn, key.participantLid]

  return {
    chatJid,
    chatType: 'group',
    fromMe,
    peer: EMPTY_IDENTITY,
    sender: fromMe ? selfIdentity(self) : identify(participant, alternates, self)
  }
}

/**
 * Reads the chat and the people of a message key. Keys the gateway must
 * ignore give `{ ignored: reason }`: no id, status posts, channels, broadcast
 * lists, unknown servers and the subscriber's chat with themself.
 */
export function readParties (message, self) {
  const key = message?.key
  if (!key || typeof key.id !== 'string' || !key.id) {
    return { ignored: 'invalid_key' }
  }

  const chatJid = normalizeJid(key.remoteJid)
  const kind = jidKind(chatJid)
  if (kind === 'group') return readGroupParties(message, chatJid, self)
  if (kind !== 'user' && kind !== 'lid') return { ignored: `chat_${kind}` }

  const parties = readDirectParties(key, chatJid, self)
  if (isSelfJid(parties.peer.jid, self)) return { ignored: 'own_chat' }
  return parties
}

/**
 * Unwraps ephemeral, view-once, document-with-caption and edit wrappers and
 * records which flags they set.
 */
export function unwrapContent (message) {
  const flags = { is_ephemeral: false, is_view_once: false }
  let content = message ?? null

  for (let depth = 0; content && depth < MAX_WRAPPER_DEPTH; depth++) {
    const wrapper = WRAPPERS.find(([field]) => content[field])
    if (!wrapper) break

    const [field, flag] = wrapper
    if (flag) flags[flag] = true
    content = content[field].message ?? null
  }
  return { content, flags }
}

function readNativeFlowId (response) {
  if (!response?.paramsJson) return null
  try {
    const params = JSON.parse(response.paramsJson)
    return params?.id == null ? null : String(params.id)
  } catch {
    return null
  }
}

// Interactive reply content type → its display text and the chosen id.
const INTERACTIVE_REPLIES = {
  buttonsResponseMessage: body => [body.selectedDisplayText, body.selectedButtonId],
  listResponseMessage: body => [
    body.title || body.description,
    body.singleSelectReply?.selectedRowId
  ],
  templateButtonReplyMessage: body => [body.selectedDisplayText, body.selectedId],
  interactiveResponseMessage: body => [
    body.body?.text,
    readNativeFlowId(body.nativeFlowResponseMessage)
  ]
}

function readText (type, body) {
  if (type === 'conversation') return body
  if (type === 'extendedTextMessage') return body.text
  if (type === 'locationMessage') return body.name || body.address
  if (type === 'liveLocationMessage') return body.caption
  if (type === 'contactMessage' || type === 'contactsArrayMessage') {
    return body.displayName
  }
  return body?.caption
}

function readMedia (body) {
  return {
    mimetype: body.mimetype || null,
    filename: body.fileName || null,
    size: toByteCount(body.fileLength),
    sha256: toBase64(body.fileSha256)
  }
}

function readContentMetadata (type, body) {
  if (type === 'locationMessage' || type === 'liveLocationMessage') {
    return { latitude: body.degreesLatitude, longitude: body.degreesLongitude }
  }
  if (type === 'contactMessage') return { vcards: [body.vcard].filter(Boolean) }
  if (type === 'contactsArrayMessage') {
    return { vcards: (body.contacts ?? []).map(item => item.vcard).filter(Boolean) }
  }
  return {}
}

/**
 * Reads kind, text, quoted id, metadata and media from unwrapped content.
 */
export function readContent (content, flags) {
  const type = getContentType(content)
  const body = type ? content[type] : null
  const kind = CONTENT_KIND[type] ?? 'unknown'
  const contextInfo = body?.contextInfo
  const metadata = {
    ...flags,
    ...readContentMetadata(type, body)
  }
  if (contextInfo?.expiration > 0) metadata.is_ephemeral = true
  if (body?.viewOnce) metadata.is_view_once = true

  let text = kind === 'unknown' ? null : readText(type, body)
  if (kind === 'interactive_reply') {
    const [displayText, selectedId] = INTERACTIVE_REPLIES[type](body)
    text = displayText
    metadata.selected_id = selectedId || null
  }

  let media = null
  if (['image', 'video', 'audio', 'document', 'sticker'].includes(kind)) {
    media = readMedia(body)
    metadata.mimetype = media.mimetype
    metadata.filename = media.filename
  }

  return {
    type,
    kind,
    text: text || null,
    quotedId: contextInfo?.stanzaId || null,
    metadata,
    media
  }
}

function readStubFailure (message) {
  const parameter = String(message.messageStubParameters?.[0] ?? '').toLowerCase()
  if (parameter.includes(MESSAGE_ABSENT)) {
    return { kind: 'unavailable', metadata: { reason: 'absent_from_node' } }
  }

  const match = DECRYPT_FAILURES.find(([text]) => parameter.includes(text))
  const reason = match ? match[1] : 'decrypt_failed'
  return { kind: 'undecryptable', metadata: { reason } }
}

// A message without content: a failed decryption, content the server did
// not include, a view-once message that linked devices may not open, or a
// notification stub (group changes and similar) that is not a message.
function readMissingContent (message) {
  const stubType = enumNumber(StubType, message.messageStubType)
  if (stubType === StubType.CIPHERTEXT) return readStubFailure(message)

  if (message.key.isViewOnce) {
    return {
      kind: 'unavailable',
      metadata: { reason: 'view_once', is_view_once: true }
    }
  }
  return null
}

function buildMessage (message, parties, content, context) {
  return buildMessageEvent({
    id: message.key.id,
    parties,
    content,
    pushName: message.pushName,
    timestamp: toIsoTimestamp(message.messageTimestamp),
    offline: context.offline
  })
}

function readEditText (editedMessage) {
  const { content, flags } = unwrapContent(editedMessage)
  if (!content) return null
  return readContent(content, flags).text
}

function mapProtocolMessage (protocol, parties, logger, messageId) {
  const type = enumNumber(ProtocolType, protocol.type)
  const targetId = protocol.key?.id
  if (type !== ProtocolType.REVOKE && type !== ProtocolType.MESSAGE_EDIT) {
    return null
  }
  if (!targetId) {
    logger.warn({ messageId }, 'ignored protocol message without a target id')
    return null
  }

  const edited = type === ProtocolType.MESSAGE_EDIT
  return {
    type: 'message_update',
    data: {
      gateway_message_id: targetId,
      chat_jid: parties.chatJid,
      change: edited ? 'edited' : 'revoked',
      text: edited ? readEditText(protocol.editedMessage) : null
    }
  }
}

// An edit whose new content is encrypted with the original message's
// secret. Baileys does not decrypt it, so only the target is known.
function mapSecretEdit (secret, parties) {
  const type = enumNumber(SecretEncType, secret.secretEncType)
  const targetId = secret.targetMessageKey?.id
  if (!targetId) return null
  if (type !== SecretEncType.MESSAGE_EDIT && type !== SecretEncType.EVENT_EDIT) {
    return null
  }

  return {
    type: 'message_update',
    data: {
      gateway_message_id: targetId,
      chat_jid: parties.chatJid,
      change: 'edit_undecryptable',
      text: null
    }
  }
}

function mapReaction (reaction, parties) {
  const targetId = reaction.key?.id
  if (!targetId) return null

  return {
    type: 'reaction',
    data: {
      gateway_message_id: targetId,
      chat_jid: parties.chatJid,
      sender_jid: parties.sender.jid,
      emoji: reaction.text || ''
    }
  }
}

function mapContentMessage (message, parties, context) {
  const { content, flags } = unwrapContent(message.message)
  if (!content || !getContentType(content)) {
    context.logger.debug({ messageId: message.key.id }, 'ignored empty message')
    return null
  }

  const type = getContentType(content)
  if (type === 'protocolMessage') {
    return mapProtocolMessage(content[type], parties, context.logger, message.key.id)
  }
  if (type === 'secretEncryptedMessage') return mapSecretEdit(content[type], parties)
  if (type === 'reactionMessage') return mapReaction(content[type], parties)
  if (NON_MESSAGE_CONTENT.has(type)) return null
  if (type === 'placeholderMessage') {
    const placeholder = { kind: 'undecryptable', metadata: { ...flags, reason: 'placeholder' } }
    return { type: 'message', data: buildMessage(message, parties, placeholder, context) }
  }

  const read = readContent(content, flags)
  return { type: 'message', data: buildMessage(message, parties, read, context) }
}

/**
 * Maps one WAMessage to a `message`, `message_update` or `reaction` event,
 * or returns null when the gateway ignores it.
 */
export function mapWebMessage (message, context = {}) {
  const logger = context.logger ?? SILENT_LOGGER
  const parties = readParties(message, context.self)
  if (parties.ignored) {
    logger.debug({ messageId: message?.key?.id, reason: parties.ignored }, 'ignored message')
    return null
  }

  if (!message.message) {
    const missing = readMissingContent(message)
    if (!missing) return null
    return { type: 'message', data: buildMessage(message, parties, missing, context) }
  }
  return mapContentMessage(message, parties, { ...context, logger })
}

/**
 * Maps a `messages.upsert` payload. Both `notify` and `append` carry new
 * messages: `append` is what arrived while the client was offline.
 */
export function mapMessagesUpsert (upsert, context = {}) {
  const offline = upsert?.type === 'append'
  const events = []
  for (const message of upsert?.messages ?? []) {
    const event = mapWebMessage(message, { ...context, offline })
    if (event) events.push(event)
  }
  return events
}

function isAckableChat (jid) {
  return ['user', 'lid', 'group'].includes(jidKind(jid))
}

function mapStatusUpdate ({ key, update }, logger) {
  if (update?.status == null || !key?.fromMe || !key.id) return null

  const chatJid = normalizeJid(key.remoteJid)
  if (!isAckableChat(chatJid)) return null

  const code = enumNumber(Status, update.status)
  if (!ACK_STATUS.has(code)) {
    logger.warn({ messageId: key.id, status: update.status }, 'ignored unknown message status')
    return null
  }
  const status = ACK_STATUS.get(code)
  if (!status) return null

  const errorCode = update.messageStubParameters?.[0]
  return {
    gateway_message_id: key.id,
    chat_jid: chatJid,
    status,
    error: status === 'failed' && errorCode != null ? String(errorCode) : null,
    timestamp: null
  }
}

/**
 * Maps `messages.update` to acks. Only status changes of messages we sent
 * count. Edits and revokes are read from `messages.upsert` instead.
 */
export function mapMessagesUpdate (updates, context = {}) {
  const logger = context.logger ?? SILENT_LOGGER
  return (updates ?? []).map(item => mapStatusUpdate(item, logger)).filter(Boolean)
}

function mapReceipt ({ key, receipt }) {
  if (!key?.fromMe || !key.id || !receipt) return null

  const chatJid = normalizeJid(key.remoteJid)
  if (jidKind(chatJid) !== 'group') return null

  const readAt = receipt.playedTimestamp ?? receipt.readTimestamp
  const at = readAt ?? receipt.receiptTimestamp
  if (at == null) return null

  return {
    gateway_message_id: key.id,
    chat_jid: chatJid,
    status: readAt == null ? 'delivered' : 'read',
    error: null,
    timestamp: toIsoTimestamp(at)
  }
}

/**
 * Maps `message-receipt.update`, which Baileys emits per participant for
 * group messages, to acks.
 */
export function mapReceiptUpdate (updates) {
  return (updates ?? []).map(mapReceipt).filter(Boolean)
}

function toPhoneJid (value) {
  if (typeof value === 'string' && /^\+?\d+$/.test(value.trim())) {
    return normalizeJid(`${value.trim().replace('+', '')}@s.whatsapp.net`)
  }
  return normalizeJid(value)
}

/**
 * Maps a LID/phone pair (`lid-mapping.update` in baileys 7) to a
 * `lid_mapped` event, or returns null when either side is not valid.
 */
export function mapLidMapping (mapping) {
  const lid = normalizeJid(mapping?.lid)
  const jid = toPhoneJid(mapping?.pn)
  if (jidKind(lid) !== 'lid' || !jidToPhone(jid)) return null
  return { lid, phone: jidToPhone(jid), jid }
}

/** Maps baileys 6.7's `chats.phoneNumberShare` `{lid, jid}`. */
export function mapPhoneNumberShare (share) {
  return mapLidMapping({ lid: share?.lid, pn: share?.jid })
}

/**
 * Maps `contacts.upsert` / `contacts.update` entries that name both a LID and
 * a phone number (baileys 7 contacts are `{id, lid?, phoneNumber?}`).
 */
export function mapContactMappings (contacts) {
  const mappings = []
  for (const contact of contacts ?? []) {
    const ids = [contact?.id, contact?.lid, contact?.phoneNumber]
    const lid = ids.find(id => jidKind(id) === 'lid')
    const pn = ids.find(id => jidKind(id) === 'user')
    const mapping = lid && pn ? mapLidMapping({ lid, pn }) : null
    if (mapping) mappings.push(mapping)
  }
  return mappings
}

/** Reads the status code of a `connection.update` close, or null. */
export function closeStatusCode (lastDisconnect) {
  const code = lastDisconnect?.error?.output?.statusCode
  return Number.isInteger(code) ? code : null
}

/**
 * Decides what a closed connection means. An expired QR also closes with
 * 408, which is only a QR timeout while the device is not paired yet and a
 * QR was shown.
 */
export function classifyClose ({ statusCode, paired, qrShown }) {
  if (statusCode === DisconnectReason.timedOut && !paired && qrShown) {
    return QR_TIMEOUT_CLOSE
  }
  return CLOSE_POLICY.get(statusCode) ?? UNKNOWN_CLOSE
}
