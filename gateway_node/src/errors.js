// Every error the gateway returns, with its HTTP status and message.
//
// Codes are stable: Django and operators match on them. A code that is no
// longer used stays retired and is never given a new meaning.

import { format } from 'node:util'

export const ERRORS = {
  GW_ERR_SIGNATURE_MISSING: {
    status: 401,
    message: 'The X-WA-Signature header is missing. Sign every request with WA_GATEWAY_SECRET.'
  },
  GW_ERR_SIGNATURE_MALFORMED: {
    status: 401,
    message: 'The X-WA-Signature header is malformed: expected t=<unix seconds>,v1=<64 lower-case hex characters>.'
  },
  GW_ERR_SIGNATURE_STALE: {
    status: 401,
    message: 'The signature timestamp %s is more than %s s away from the gateway clock. Check both clocks.'
  },
  GW_ERR_SIGNATURE_MISMATCH: {
    status: 401,
    message: 'The signature does not match any configured secret. Check that both sides share WA_GATEWAY_SECRET.'
  },
  GW_ERR_USER_ID_REQUIRED: {
    status: 400,
    message: 'user_id is required: send it in the JSON body, or in the query string for GET requests.'
  },
  GW_ERR_INVALID_JSON: {
    status: 400,
    message: 'The request body is not valid JSON: %s.'
  },
  GW_ERR_INVALID_BODY: {
    status: 400,
    message: 'Invalid request: %s.'
  },
  GW_ERR_INVALID_RECIPIENT: {
    status: 400,
    message: '%s'
  },
  GW_ERR_INVALID_PHONE: {
    status: 400,
    message: 'Invalid phone %s: send an E.164 number such as +5511900000001.'
  },
  GW_ERR_NOT_FOUND: {
    status: 404,
    message: 'No route %s %s.'
  },
  GW_ERR_SESSION_NOT_FOUND: {
    status: 404,
    message: 'No WhatsApp session for user %s on this gateway. Call POST /start first.'
  },
  GW_ERR_QR_NOT_PENDING: {
    status: 404,
    message: 'No QR code is pending for user %s (state %s).'
  },
  GW_ERR_SIM_ONLY: {
    status: 404,
    message: '%s exists only with WA_ENGINE=sim; this gateway runs the %s engine.'
  },
  GW_ERR_CLIENT_NOT_READY: {
    status: 409,
    message: 'The WhatsApp client of user %s is not connected (state %s).'
  },
  GW_ERR_IDEMPOTENCY_CONFLICT: {
    status: 409,
    message: 'message_id %s was already used for a different recipient or text. Use a new message_id.'
  },
  GW_ERR_SEND_IN_DOUBT: {
    status: 409,
    message: 'message_id %s was being sent when the gateway stopped, so it may or may not have reached WhatsApp. ' +
      'Check the chat on the phone before sending it again with a new message_id.'
  },
  GW_ERR_BODY_TOO_LARGE: {
    status: 413,
    message: 'The request body is larger than %s bytes.'
  },
  GW_ERR_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'Unsupported Content-Type %s: send application/json.'
  },
  GW_ERR_NOT_ON_WHATSAPP: {
    status: 422,
    message: 'The number %s has no WhatsApp account.'
  },
  GW_ERR_INTERNAL: {
    status: 500,
    message: 'Internal Server Error'
  },
  GW_ERR_ENGINE_FAILED: {
    status: 502,
    message: 'The WhatsApp client of user %s failed: %s'
  },
  GW_ERR_MAX_SESSIONS: {
    status: 503,
    message: 'This gateway already runs its maximum of %s sessions. Raise WA_MAX_SESSIONS or add a gateway node.'
  },
  GW_ERR_SHUTTING_DOWN: {
    status: 503,
    message: 'The gateway is shutting down. Try again shortly.'
  },
  GW_ERR_SEND_TIMEOUT: {
    status: 504,
    message: 'WhatsApp did not confirm message_id %s within %s ms; the message may still be sent.'
  }
}

/**
 * An error with a GW_ERR_* code, which the error handler turns into JSON. Its
 * message is written for the caller and contains no internals, so it is sent
 * whatever the status. `options.message` replaces the table's text.
 */
export class GatewayError extends Error {
  constructor (code, args = [], options = {}) {
    const entry = ERRORS[code]
    if (!entry) throw new TypeError(`Unknown gateway error code ${code}`)

    const { message, ...errorOptions } = options
    super(message ?? format(entry.message, ...args), errorOptions)
    this.name = 'GatewayError'
    this.code = code
    this.statusCode = entry.status
  }
}

export function gatewayError (code, ...args) {
  return new GatewayError(code, args)
}

/** True when `code` is one of the GW_ERR_* codes above. */
export function isGatewayCode (code) {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code)
}
