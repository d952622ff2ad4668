// HMAC signatures on every request between Django and the gateway.
//
// Header: `X-WA-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, computed
// over the bytes `<t>.<METHOD>.<path with query>.<raw body>` with the shared
// secret. WA_GATEWAY_SECRET may list several secrets: the first signs and any
// of them verifies, so a secret can be rotated without downtime. Django's
// sessions_wa/signing.py implements the same scheme, and both test suites
// check test/fixtures/signing-vectors.json.

import { createHmac, timingSafeEqual } from 'node:crypto'

export const SIGNATURE_HEADER = 'x-wa-signature'
export const DEFAULT_MAX_AGE_SECONDS = 300

const HEADER_PATTERN = /^t=(\d{1,12}),v1=([0-9a-f]{64})$/

/** The signature header is missing, malformed, stale or does not match. */
export class SignatureError extends Error {
  constructor (reason, message, details = {}) {
    super(message)
    this.name = 'SignatureError'
    // One of: missing, malformed, stale, mismatch.
    this.reason = reason
    this.details = details
  }
}

function toBuffer (body) {
  if (body === undefined || body === null) return Buffer.alloc(0)
  if (Buffer.isBuffer(body)) return body
  return Buffer.from(body, 'utf8')
}

/** Computes the hex HMAC-SHA256 of one request. */
export function computeSignature ({ secret, timestamp, method, path, body }) {
  const hmac = createHmac('sha256', secret)
  hmac.update(`${timestamp}.${method.toUpperCase()}.${path}.`, 'utf8')
  hmac.update(toBuffer(body))
  return hmac.digest('hex')
}

/** Builds the full header value for one request. */
export function sign ({ secret, timestamp, method, path, body }) {
  const digest = computeSignature({ secret, timestamp, method, path, body })
  return `t=${timestamp},v1=${digest}`
}

/**
 * Parses the header and checks its age. Returns `{ timestamp, digest }` or
 * throws a SignatureError. Split from verify() so that a request can be
 * rejected before its body is read.
 */
export function checkHeader ({ header, now, maxAge = DEFAULT_MAX_AGE_SECONDS }) {
  if (!header) {
    throw new SignatureError('missing', 'The X-WA-Signature header is missing.')
  }

  const match = HEADER_PATTERN.exec(String(header).trim())
  if (!match) {
    throw new SignatureError('malformed', 'The X-WA-Signature header is malformed.')
  }

  const timestamp = Number(match[1])
  if (Math.abs(now - timestamp) > maxAge) {
    throw new SignatureError(
      'stale',
      `The signature timestamp ${timestamp} is more than ${maxAge} s away from the clock.`,
      { timestamp, maxAge }
    )
  }
  return { timestamp, digest: match[2] }
}

/**
 * Throws a SignatureError unless `header` signs this request with one of
 * `secrets`. `now` is in unix seconds.
 */
export function verify ({ header, secrets, method, path, body, now, maxAge = DEFAULT_MAX_AGE_SECONDS }) {
  const { timestamp, digest } = checkHeader({ header, now, maxAge })
  const received = Buffer.from(digest, 'hex')

  let matched = false
  for (const secret of secrets) {
    const expected = Buffer.from(
      computeSignature({ secret, timestamp, method, path, body }),
      'hex'
    )
    // Every secret is tried even after a match, so the time taken does not
    // tell which secret matched.
    if (timingSafeEqual(expected, received)) matched = true
  }
  if (!matched) {
    throw new SignatureError('mismatch', 'The signature does not match any configured secret.')
  }
}
