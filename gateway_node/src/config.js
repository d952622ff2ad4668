// Gateway settings, read from the environment once at boot.
//
// Each variable is declared once below with its type, bounds and default.
// loadConfig() checks every variable and throws a ConfigError that names
// each invalid one, so a typo stops the gateway at boot rather than later.

import { dirname, isAbsolute, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const GATEWAY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

export const DEVELOPMENT_SECRET = 'development-gateway-secret-change-me'

export const ENGINES = ['sim', 'baileys', 'webjs']

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const DB_SYNCHRONOUS = ['normal', 'full']
const TRUE_WORDS = ['1', 'true', 'yes', 'on']
const FALSE_WORDS = ['0', 'false', 'no', 'off', '']

/** One or more environment variables have invalid values. */
export class ConfigError extends Error {
  constructor (problems) {
    super(`Invalid gateway configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

function integer ({ min = 0, max = Number.MAX_SAFE_INTEGER } = {}) {
  return (text) => {
    if (!/^\d+$/.test(text.trim())) throw new Error(`must be a whole number, got ${JSON.stringify(text)}`)
    const value = Number(text.trim())
    if (value < min || value > max) throw new Error(`must be between ${min} and ${max}, got ${value}`)
    return value
  }
}

function oneOf (choices) {
  return (text) => {
    const value = text.trim().toLowerCase()
    if (!choices.includes(value)) {
      throw new Error(`must be one of ${choices.join(', ')}, got ${JSON.stringify(text)}`)
    }
    return value
  }
}

function boolean (text) {
  const value = text.trim().toLowerCase()
  if (TRUE_WORDS.includes(value)) return true
  if (FALSE_WORDS.includes(value)) return false
  throw new Error(`must be true or false, got ${JSON.stringify(text)}`)
}

function nonEmpty (text) {
  if (!text.trim()) throw new Error('must not be empty')
  return text.trim()
}

function httpUrl (text) {
  let url
  try {
    url = new URL(text.trim())
  } catch {
    throw new Error(`must be an absolute http(s) URL, got ${JSON.stringify(text)}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`must use http or https, got ${url.protocol}`)
  }
  return url.toString()
}

function secretList (text) {
  const secrets = text.split(',').map((secret) => secret.trim()).filter(Boolean)
  if (secrets.length === 0) throw new Error('must hold at least one secret')
  return secrets
}

function integerList (count, names) {
  const parseOne = integer({ max: 24 * 60 * 60 * 1000 })
  return (text) => {
    const parts = text.split(',')
    if (parts.length !== count) {
      throw new Error(`must be ${count} comma-separated whole numbers (${names}), got ${JSON.stringify(text)}`)
    }
    return parts.map(parseOne)
  }
}

function digitList (text) {
  const entries = text.split(',').map((entry) => entry.trim().replace(/^\+/, '')).filter(Boolean)
  for (const entry of entries) {
    if (!/^\d{7,15}$/.test(entry)) {
      throw new Error(`must list phone numbers of 7 to 15 digits, got ${JSON.stringify(entry)}`)
    }
  }
  return entries
}

function dataDir (text) {
  const path = nonEmpty(text)
  return isAbsolute(path) ? path : resolve(GATEWAY_ROOT, path)
}

// name: [parser, default text]. An empty value counts as unset (as Compose
// writes `NAME=`), except for the secret, where it is an error.
const VARIABLES = {
  HOST: [nonEmpty, '127.0.0.1'],
  PORT: [integer({ max: 65535 }), '3000'],
  LOG_LEVEL: [oneOf(LOG_LEVELS), 'info'],
  NODE_ENV: [(text) => text.trim(), ''],
  WA_GATEWAY_SECRET: [secretList, DEVELOPMENT_SECRET],
  WA_ALLOW_DEV_SECRET: [boolean, 'false'],
  WA_CALLBACK_URL: [httpUrl, 'http://127.0.0.1:8000/api/settings/whatsapp/session/update'],
  WA_CALLBACK_TIMEOUT_MS: [integer({ min: 100, max: 300000 }), '10000'],
  WA_CALLBACK_BACKOFF_MS: [integerList(2, 'first retry, maximum'), '1000,60000'],
  WA_CALLBACK_CONCURRENCY: [integer({ min: 1, max: 64 }), '4'],
  WA_CALLBACK_LINGER_MS: [integer({ min: 0, max: 10000 }), '100'],
  WA_ENGINE: [oneOf(ENGINES), 'sim'],
  WA_DATA_DIR: [dataDir, 'data'],
  WA_DB_SYNCHRONOUS: [oneOf(DB_SYNCHRONOUS), 'normal'],
  WA_MAX_SESSIONS: [integer({ min: 1, max: 1000000 }), '500'],
  WA_RESTORE_CONCURRENCY: [integer({ min: 1, max: 1000 }), '5'],
  WA_RESTORE_TIMEOUT_MS: [integer({ min: 1, max: 3600000 }), '60000'],
  WA_SEND_TIMEOUT_MS: [integer({ min: 100, max: 600000 }), '60000'],
  WA_SEND_BATCH_WAIT_MS: [integer({ min: 100, max: 600000 }), '5000'],
  WA_SEND_RECORD_TTL_HOURS: [integer({ min: 1, max: 24 * 365 }), '168'],
  WA_SHUTDOWN_TIMEOUT_MS: [integer({ min: 0, max: 600000 }), '10000'],
  WA_SIM_ACK_DELAYS_MS: [integerList(3, 'sent, delivered, read'), '300,1000,2500'],
  WA_SIM_QR_TTL_MS: [integerList(2, 'first, next'), '60000,20000'],
  WA_SIM_QR_MAX: [integer({ min: 1, max: 100 }), '6'],
  WA_QR_MAX: [integer({ min: 1, max: 100 }), '6'],
  WA_SIM_UNREGISTERED: [digitList, ''],
  WA_CHROMIUM_PATH: [nonEmpty, '/usr/bin/chromium'],
  WA_BROWSER_NAME: [nonEmpty, 'Chrome']
}

function readVariables (env) {
  const values = {}
  const problems = []
  for (const [name, [parse, fallback]] of Object.entries(VARIABLES)) {
    const raw = env[name]
    const unset = raw === undefined || (raw === '' && name !== 'WA_GATEWAY_SECRET')
    const text = unset ? fallback : String(raw)
    try {
      values[name] = parse(text)
    } catch (error) {
      problems.push(`${name} ${error.message}.`)
    }
  }
  return { values, problems }
}

function checkSecrets (values, problems) {
  if (!values.WA_GATEWAY_SECRET?.includes(DEVELOPMENT_SECRET)) return
  if (values.WA_ALLOW_DEV_SECRET) return

  // The development secret is public, so anyone who can reach the gateway
  // could drive a real WhatsApp account or forge callbacks to Django.
  if (values.NODE_ENV === 'production') {
    problems.push('WA_GATEWAY_SECRET still holds the development value while NODE_ENV=production; set a random secret shared with Django.')
  } else if (values.WA_ENGINE && values.WA_ENGINE !== 'sim') {
    problems.push(`WA_GATEWAY_SECRET still holds the development value with WA_ENGINE=${values.WA_ENGINE}; set a random secret shared with Django, or WA_ALLOW_DEV_SECRET=true on a private development machine.`)
  }
}

function checkOrder (values, problems) {
  const delays = values.WA_SIM_ACK_DELAYS_MS
  if (delays && !(delays[0] <= delays[1] && delays[1] <= delays[2])) {
    problems.push(`WA_SIM_ACK_DELAYS_MS must not decrease (sent <= delivered <= read), got ${delays.join(',')}.`)
  }
  const backoff = values.WA_CALLBACK_BACKOFF_MS
  if (backoff && (backoff[0] < 1 || backoff[0] > backoff[1])) {
    problems.push(`WA_CALLBACK_BACKOFF_MS needs 1 <= first retry <= maximum, got ${backoff.join(',')}.`)
  }
  const qrTtl = values.WA_SIM_QR_TTL_MS
  if (qrTtl && (qrTtl[0] < 1 || qrTtl[1] < 1)) {
    problems.push(`WA_SIM_QR_TTL_MS must be above 0, got ${qrTtl.join(',')}.`)
  }
}

/**
 * Reads and checks the gateway settings from `env` (process.env by default).
 * Throws a ConfigError listing every invalid variable.
 */
export function loadConfig (env = process.env) {
  const { values, problems } = readVariables(env)
  checkSecrets(values, problems)
  checkOrder(values, problems)
  if (problems.length) throw new ConfigError(problems)

  const [sentMs, deliveredMs, readMs] = values.WA_SIM_ACK_DELAYS_MS
  const [firstQrMs, nextQrMs] = values.WA_SIM_QR_TTL_MS
  const [backoffFirstMs, backoffMaxMs] = values.WA_CALLBACK_BACKOFF_MS

  return Object.freeze({
    host: values.HOST,
    port: values.PORT,
    logLevel: values.LOG_LEVEL,
    secrets: values.WA_GATEWAY_SECRET,
    usesDevelopmentSecret: values.WA_GATEWAY_SECRET.includes(DEVELOPMENT_SECRET),
    engine: values.WA_ENGINE,
    dataDir: values.WA_DATA_DIR,
    dbSynchronous: values.WA_DB_SYNCHRONOUS,
    maxSessions: values.WA_MAX_SESSIONS,
    restoreConcurrency: values.WA_RESTORE_CONCURRENCY,
    restoreTimeoutMs: values.WA_RESTORE_TIMEOUT_MS,
    sendTimeoutMs: values.WA_SEND_TIMEOUT_MS,
    sendBatchWaitMs: values.WA_SEND_BATCH_WAIT_MS,
    sendRecordTtlMs: values.WA_SEND_RECORD_TTL_HOURS * 60 * 60 * 1000,
    shutdownTimeoutMs: values.WA_SHUTDOWN_TIMEOUT_MS,
    callback: Object.freeze({
      url: values.WA_CALLBACK_URL,
      timeoutMs: values.WA_CALLBACK_TIMEOUT_MS,
      backoffFirstMs,
      backoffMaxMs,
      concurrency: values.WA_CALLBACK_CONCURRENCY,
      lingerMs: values.WA_CALLBACK_LINGER_MS
    }),
    // Handed to createEngine() as `config`. Each engine reads its own keys.
    engineOptions: Object.freeze({
      qrMax: values.WA_ENGINE === 'sim' ? values.WA_SIM_QR_MAX : values.WA_QR_MAX,
      qrTtlMs: Object.freeze({ first: firstQrMs, next: nextQrMs }),
      ackDelaysMs: Object.freeze({ sent: sentMs, delivered: deliveredMs, read: readMs }),
      unregistered: new Set(values.WA_SIM_UNREGISTERED),
      executablePath: values.WA_CHROMIUM_PATH,
      browserName: values.WA_BROWSER_NAME,
      dataDir: values.WA_DATA_DIR
    })
  })
}
