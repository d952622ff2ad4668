// The pino logger shared by Fastify and the gateway.
//
// JSON lines by default, and pino-pretty only when stdout is a terminal and
// the package is installed. Message text and signature headers are redacted
// wherever they would land in a log line by mistake.

import { createRequire } from 'node:module'

import pino from 'pino'

export const REDACT_PATHS = [
  'text',
  '*.text',
  'data.text',
  'body.text',
  'req.headers["x-wa-signature"]',
  'headers["x-wa-signature"]'
]

// Error codes whose message repeats a number the caller sent.
const CODES_WITH_NUMBERS = new Set(['GW_ERR_INVALID_RECIPIENT', 'GW_ERR_INVALID_PHONE', 'GW_ERR_NOT_ON_WHATSAPP'])

// A run of digits that may be typed with spaces, dots, dashes or parentheses.
const DIGIT_RUN = /\d[\d\s().-]*\d/g

function maskRun (run) {
  const digits = run.replace(/\D/g, '').length
  if (digits < 6) return run
  let seen = 0
  return run.replace(/\d/g, (digit) => {
    seen += 1
    return seen > digits - 2 ? digit : '*'
  })
}

/**
 * Returns an error message for a log line. For the codes whose message
 * repeats a phone number the caller sent, each run of six or more digits
 * keeps only its last two, so that no log line contains the number.
 */
export function reasonForLog (code, message) {
  if (!CODES_WITH_NUMBERS.has(code) || typeof message !== 'string') return message
  return message.replace(DIGIT_RUN, maskRun)
}

function prettyTransport () {
  if (!process.stdout.isTTY) return undefined
  try {
    createRequire(import.meta.url).resolve('pino-pretty')
  } catch {
    return undefined
  }
  return { target: 'pino-pretty' }
}

/** Builds the logger at `level`; `destination` (a stream) is for tests. */
export function createLogger ({ level = 'info', destination } = {}) {
  const options = {
    level,
    base: { service: 'wa-gateway' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' }
  }
  if (destination) return pino(options, destination)

  const transport = prettyTransport()
  return transport ? pino({ ...options, transport }) : pino(options)
}
