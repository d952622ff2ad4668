// WhatsApp JID helpers shared by the engines and the HTTP routes.
//
// A JID is `user[:device]@server`. Baileys and whatsapp-web.js both put the
// device number after a colon (`5511900000001:3@s.whatsapp.net`), and
// whatsapp-web.js names the user server `c.us` where Baileys uses
// `s.whatsapp.net`. Everything the gateway stores or reports goes through
// normalizeJid() so that one person has one JID.

const USER_SERVER = 's.whatsapp.net'
const LEGACY_USER_SERVER = 'c.us'
const LID_SERVER = 'lid'

// ITU-T E.164 allows at most 15 digits. NOTE: the floor of 7 is a chosen
// bound that keeps a three-digit country code plus a four-digit local number
// valid, as some small island countries use.
const MIN_PHONE_DIGITS = 7
const MAX_PHONE_DIGITS = 15

const DIGITS = /^\d+$/
const PHONE_SEPARATORS = /[\s\-().]/g
const TEL_URI_SCHEME = /^tel:/i
const TRUNK_ZERO = /\(0\)/g

function splitJid (jid) {
  if (typeof jid !== 'string') return null

  const text = jid.trim()
  const at = text.indexOf('@')
  if (at <= 0 || at !== text.lastIndexOf('@')) return null

  let server = text.slice(at + 1).toLowerCase()
  if (!server) return null
  if (server === LEGACY_USER_SERVER) server = USER_SERVER

  let user = text.slice(0, at).split(':')[0]
  if (server === USER_SERVER || server === LID_SERVER) {
    // An agent part (`user_1`) is another device marker of the same person.
    user = user.split('_')[0]
    if (!DIGITS.test(user)) return null
  }
  if (!user) return null

  return { user, server }
}

/**
 * Returns the JID without its device suffix and with `c.us` mapped to
 * `s.whatsapp.net`, or null when `jid` is empty or not a JID.
 */
export function normalizeJid (jid) {
  const parts = splitJid(jid)
  if (!parts) return null
  return `${parts.user}@${parts.server}`
}

/**
 * Classifies a JID. Only 'user' and 'lid' JIDs name a person who may become
 * a customer. Every other kind, 'unknown' included, must be ignored.
 */
export function jidKind (jid) {
  const parts = splitJid(jid)
  if (!parts) return 'unknown'

  switch (parts.server) {
    case USER_SERVER:
      return 'user'
    case LID_SERVER:
      return 'lid'
    case 'g.us':
      return 'group'
    case 'broadcast':
      return parts.user === 'status' ? 'status' : 'broadcast'
    case 'newsletter':
      return 'newsletter'
    default:
      return 'unknown'
  }
}

/**
 * Returns the E.164 phone number of a phone-number JID, or null for any other
 * kind. A LID's digits are not a phone number and never come back from here.
 */
export function jidToPhone (jid) {
  const parts = splitJid(jid)
  if (!parts || parts.server !== USER_SERVER) return null
  if (parts.user.length < MIN_PHONE_DIGITS) return null
  if (parts.user.length > MAX_PHONE_DIGITS) return null
  return `+${parts.user}`
}

function invalidRecipient (input, reason) {
  const error = new Error(
    `Invalid recipient ${JSON.stringify(input)}: ${reason}. ` +
      'Send an E.164 number such as +5511900000001 or a user JID.'
  )
  error.code = 'GW_ERR_INVALID_RECIPIENT'
  return error
}

function phoneDigitsToJid (input, text) {
  // `+44 (0)7700…` marks a trunk zero that is dialled only inside the
  // country, so it is not part of the international number.
  let digits = text
    .replace(TEL_URI_SCHEME, '')
    .replace(TRUNK_ZERO, '')
    .replace(PHONE_SEPARATORS, '')
  if (digits.startsWith('+')) {
    digits = digits.slice(1)
  } else if (digits.startsWith('00')) {
    // `00` is the international call prefix in most countries, and no
    // country code starts with 0, so `0055…` can only mean `+55…`.
    digits = digits.slice(2)
  }

  if (!DIGITS.test(digits)) {
    throw invalidRecipient(input, 'it may contain only digits after the +')
  }
  if (digits.startsWith('0')) {
    throw invalidRecipient(input, 'a national number needs its country code')
  }
  if (digits.length < MIN_PHONE_DIGITS || digits.length > MAX_PHONE_DIGITS) {
    throw invalidRecipient(
      input,
      `an E.164 number has ${MIN_PHONE_DIGITS} to ${MAX_PHONE_DIGITS} digits`
    )
  }
  return `${digits}@${USER_SERVER}`
}

/**
 * Turns an E.164 number, bare digits, or a user or LID JID into a normalised
 * JID. Throws an Error with code GW_ERR_INVALID_RECIPIENT, naming the value,
 * for anything else (letters, group JIDs, more than 15 digits).
 */
export function toUserJid (input) {
  if (typeof input !== 'string' || !input.trim()) {
    throw invalidRecipient(input, 'it is empty')
  }

  const text = input.trim()
  if (!text.includes('@')) return phoneDigitsToJid(input, text)

  const at = text.indexOf('@')
  const server = text.slice(at + 1).trim().toLowerCase()
  if (server === USER_SERVER || server === LEGACY_USER_SERVER) {
    // A JID never contains `+`, so `+5511…@s.whatsapp.net` is read as the
    // number it means.
    const user = text.slice(0, at).split(':')[0].replace(/^\+/, '')
    return phoneDigitsToJid(input, user)
  }

  const kind = jidKind(text)
  if (kind === 'lid') return normalizeJid(text)
  throw invalidRecipient(input, `a ${kind} JID cannot receive direct messages`)
}

/**
 * Converts a normalised user, LID or group JID into the chat id that
 * whatsapp-web.js expects (`<digits>@c.us` for phone numbers).
 */
export function toWebjsChatId (jid) {
  const parts = splitJid(jid)
  const kind = jidKind(jid)
  if (kind === 'user') return `${parts.user}@${LEGACY_USER_SERVER}`
  if (kind === 'lid' || kind === 'group') return `${parts.user}@${parts.server}`
  throw invalidRecipient(jid, `a ${kind} JID has no whatsapp-web.js chat id`)
}
