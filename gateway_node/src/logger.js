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
