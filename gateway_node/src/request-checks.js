// Request checks shared by every route: signature, JSON body, user_id, and
// the error handler that turns failures into `{ code, message }`.
//
// The signature covers the raw body bytes, so the JSON parser keeps the
// buffer and parses it only after the signature has been checked. The
// header's shape and age are checked in onRequest, before the body is read,
// and the HMAC in preValidation, once the body is in.

import { GatewayError, gatewayError, isGatewayCode } from './errors.js'
import { reasonForLog } from './logger.js'
import { SIGNATURE_HEADER, SignatureError, checkHeader, verify } from './signing.js'

const SIGNATURE_CODES = {
  missing: 'GW_ERR_SIGNATURE_MISSING',
  malformed: 'GW_ERR_SIGNATURE_MALFORMED',
  stale: 'GW_ERR_SIGNATURE_STALE',
  mismatch: 'GW_ERR_SIGNATURE_MISMATCH'
}

const GENERIC_SERVER_ERROR = 'Internal Server Error'

function signatureFailure (error) {
  if (!(error instanceof SignatureError)) return error
  if (error.reason === 'stale') {
    return gatewayError(SIGNATURE_CODES.stale, error.details.timestamp, error.details.maxAge)
  }
  return gatewayError(SIGNATURE_CODES[error.reason])
}

function routeConfig (request) {
  return request.routeOptions?.config ?? {}
}

function isPlainObject (value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

// Fastify's own errors that are the caller's fault, mapped to our codes.
function fromFastifyError (error, bodyLimit) {
  if (error.validation) {
    return new GatewayError('GW_ERR_INVALID_BODY', [error.message])
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new GatewayError('GW_ERR_BODY_TOO_LARGE', [bodyLimit])
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new GatewayError('GW_ERR_UNSUPPORTED_MEDIA_TYPE', [error.contentType ?? 'of this request'])
  }
  if (error.statusCode >= 400 && error.statusCode < 500) {
    return new GatewayError('GW_ERR_INVALID_BODY', [error.message.replace(/\.$/, '')])
  }
  return null
}

function toGatewayError (error, bodyLimit) {
  if (error instanceof GatewayError) return error
  if (isGatewayCode(error.code) && error.statusCode) return error
  return fromFastifyError(error, bodyLimit)
}

/**
 * Maps any error to the `{ status, code, message }` the gateway responds
 * with: a GW_ERR_* error as it is, Fastify's client errors as their GW_ERR_*
 * equivalent, and anything else as a 500 GW_ERR_INTERNAL. `bodyLimit` is the
 * route's limit in bytes, named in GW_ERR_BODY_TOO_LARGE.
 */
export function toErrorReply (error, bodyLimit) {
  const known = toGatewayError(error, bodyLimit)
  // Messages of GatewayErrors are written for the caller. Any other error
  // may carry internals and gets a generic text.
  if (!known) return { status: 500, code: 'GW_ERR_INTERNAL', message: GENERIC_SERVER_ERROR }
  return { status: known.statusCode, code: known.code, message: known.message }
}

/**
 * Installs the JSON parser, the signature and user_id hooks, and the error
 * and not-found handlers on `app`. Routes opt out of the signature with
 * `config: { public: true }` and ask for user_id with
 * `config: { userScoped: true }`.
 */
export function installRequestChecks (app, { secrets, bodyLimit, clock = Date.now }) {
  const nowSeconds = () => Math.floor(clock() / 1000)

  app.removeContentTypeParser(['application/json'])
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, (request, buffer, done) => {
    request.rawBody = buffer
    if (buffer.length === 0) {
      done(null, undefined)
      return
    }
    try {
      done(null, JSON.parse(buffer.toString('utf8')))
    } catch (error) {
      // Reported after the signature check, so that an unsigned caller
      // learns nothing about how the body is read.
      request.jsonError = error
      done(null, undefined)
    }
  })

  app.addHook('onRequest', async (request) => {
    if (routeConfig(request).public) return
    try {
      checkHeader({ header: request.headers[SIGNATURE_HEADER], now: nowSeconds() })
    } catch (error) {
      throw signatureFailure(error)
    }
  })

  app.addHook('preValidation', async (request) => {
    const config = routeConfig(request)
    if (config.public) return
    try {
      verify({
        header: request.headers[SIGNATURE_HEADER],
        secrets,
        method: request.method,
        path: request.raw.url,
        body: request.rawBody,
        now: nowSeconds()
      })
    } catch (error) {
      throw signatureFailure(error)
    }

    if (request.jsonError) {
      throw gatewayError('GW_ERR_INVALID_JSON', request.jsonError.message.replace(/\.$/, ''))
    }
    if (!config.userScoped) return

    const readsQuery = request.method === 'GET' || request.method === 'HEAD'
    const source = readsQuery ? request.query : request.body
    if (!readsQuery && source !== undefined && !isPlainObject(source)) {
      throw gatewayError('GW_ERR_INVALID_BODY', 'the body must be a JSON object')
    }
    const userId = source?.user_id
    if (userId === undefined || userId === null || userId === '') {
      throw gatewayError('GW_ERR_USER_ID_REQUIRED')
    }
  })

  app.setErrorHandler((error, request, reply) => {
    // A route may set its own bodyLimit, as POST /send/batch does.
    const { status: statusCode, code, message } = toErrorReply(error, request.routeOptions?.bodyLimit ?? bodyLimit)
    const context = { code, statusCode, method: request.method, route: request.routeOptions?.url }

    if (statusCode >= 500) {
      request.log.error({ ...context, err: error }, 'request failed')
    } else if (statusCode === 401) {
      request.log.warn({ ...context, reason: error.message }, 'rejected a request with an invalid signature')
    } else {
      request.log.info({ ...context, reason: reasonForLog(code, message) }, 'request rejected')
    }
    reply.code(statusCode).send({ code, message })
  })

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      code: 'GW_ERR_NOT_FOUND',
      message: gatewayError('GW_ERR_NOT_FOUND', request.method, request.url.split('?')[0]).message
    })
  })
}
