// Helpers that the Baileys and whatsapp-web.js normalisers share once each has
// read its library's message.

const MILLISECONDS_THRESHOLD = 1e12
const LATEST_VALID_MS = Date.UTC(9999, 11, 31)

export const EMPTY_IDENTITY = Object.freeze({ jid: null, phone: null, lid: null })
export const SILENT_LOGGER = { debug () {}, warn () {} }

/**
 * Converts seconds or milliseconds since the epoch (a number) into an
 * ISO 8601 UTC string, or null for anything else.
 */
export function epochToIso (number) {
  if (typeof number !== 'number' || !Number.isFinite(number) || number <= 0) return null

  const ms = number > MILLISECONDS_THRESHOLD ? number : number * 1000
  if (ms > LATEST_VALID_MS) return null
  return new Date(ms).toISOString()
}

export function isSelfJid (jid, self) {
  return Boolean(jid && self && (jid === self.jid || jid === self.lid))
}

export function selfIdentity (self) {
  return {
    jid: self?.jid ?? null,
    phone: self?.phone ?? null,
    lid: self?.lid ?? null
  }
}

/**
 * Builds the data of a `message` event from the parties and content an
 * engine read. `pushName` is the sender's display name as the library gave
 * it, `timestamp` an ISO string or null.
 */
export function buildMessageEvent ({ id, parties, content, pushName, timestamp, offline }) {
  const { sender, peer } = parties
  return {
    gateway_message_id: id,
    chat_jid: parties.chatJid,
    chat_type: parties.chatType,
    sender_jid: sender.jid,
    sender_phone: sender.phone,
    sender_lid: sender.lid,
    peer_jid: peer.jid,
    peer_phone: peer.phone,
    peer_lid: peer.lid,
    // The push name of a message we sent is the subscriber's own name.
    push_name: parties.fromMe ? null : pushName || null,
    from_me: parties.fromMe,
    kind: content.kind,
    text: content.text ?? null,
    quoted_id: content.quotedId ?? null,
    metadata: { is_ephemeral: false, is_view_once: false, ...content.metadata },
    media: content.media ?? null,
    timestamp,
    offline: Boolean(offline)
  }
}
