// The gateway's Fastify application, without listening.
//
// buildApp() wires the database, outbox, auth store, session registry and
// routes. server.js listens on it, and tests drive it with app.inject().

import Fastify from 'fastify'

import { FileAuthStore } from './auth-store.js'
import { openDatabase } from './database.js'
import { loadEngine } from './engines/index.js'
import { createLogger } from './logger.js'
import { MessageSender } from './message-sender.js'
import { createMetrics } from './metrics.js'
import { Outbox } from './outbox.js'
import { installRequestChecks } from './request-checks.js'
import healthRoutes from './routes/health.js'
import messageRoutes from './routes/messages.js'
import outboxRoutes from './routes/outbox.js'
import sessionRoutes from './routes/sessions.js'
import { MAX_TEXT_LENGTH } from './routes/schemas.js'
import simRoutes from './routes/sim.js'
import { SendStore } from './send-store.js'
import { SessionManager } from './session-manager.js'
import { commitTurn } from './turn-writes.js'

// A text of MAX_TEXT_LENGTH code points must fit in one body. The worst case
// is a character outside the Basic Multilingual Plane (most emoji) that the
// sender escapes as a surrogate pair, "\ud83d\ude00": 12 bytes. Python's
// json.dumps escapes that way by default. The other fields of /send and
// /sim/inbound (ids, numbers, push_name) are a few hundred characters at most,
// which the 16 KiB on top covers even when escaped.
const MAX_BYTES_PER_TEXT_CHARACTER = 12
const OTHER_FIELDS_BYTES = 16 * 1024
export const BODY_LIMIT_BYTES = MAX_TEXT_LENGTH * MAX_BYTES_PER_TEXT_CHARACTER + OTHER_FIELDS_BYTES

const SEND_RECORD_PURGE_MS = 60 * 60 * 1000

/**
 * Builds the app from a loadConfig() result. Options for tests and embedding:
 * `logger` (pino), `engineFactory` (a createEngine function used instead of
 * WA_ENGINE's), `clock` (ms since the epoch), `fetch` and `random` for the
 * callback dispatcher, `processMetrics` (Node process metrics on /metrics).
 */
export async function buildApp (config, options = {}) {
  const clock = options.clock ?? Date.now
  const logger = options.logger ?? createLogger({ level: config.logLevel })

  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT_BYTES,
    // Request ids are generated here, because a caller-chosen id could forge
    // log lines.
    requestIdHeader: false,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } }
  })

  const db = openDatabase({ dataDir: config.dataDir, synchronous: config.dbSynchronous })
  const authStore = new FileAuthStore({ dataDir: config.dataDir, logger })
  const sends = new SendStore({ db, ttlMs: config.sendRecordTtlMs, clock, logger: logger.child({ component: 'sends' }) })

  // The read callbacks run at scrape time, after `sessions` and `outbox`
  // below exist.
  const metrics = createMetrics({
    processMetrics: options.processMetrics ?? false,
    read: {
      sessionCounts: () => sessions.sessionCounts(),
      outboxPending: () => outbox.pendingCount(),
      deadLetterCount: () => outbox.deadLetterCount()
    }
  })

  const outbox = new Outbox({
    db,
    callback: config.callback,
    secret: config.secrets[0],
    logger: logger.child({ component: 'outbox' }),
    metrics,
    fetch: options.fetch,
    random: options.random,
    clock
  })

  const createEngine = options.engineFactory ?? await loadEngine(config.engine)
  const sessions = new SessionManager({
    config,
    createEngine,
    authStore,
    outbox,
    sends,
    metrics,
    logger: logger.child({ component: 'sessions' }),
    clock
  })
  const sender = new MessageSender({
    sessions,
    sends,
    metrics,
    logger: logger.child({ component: 'sender' }),
    timeoutMs: config.sendTimeoutMs
  })

  app.decorate('gateway', { config, db, authStore, sends, outbox, sessions, sender, metrics })

  installRequestChecks(app, { secrets: config.secrets, bodyLimit: BODY_LIMIT_BYTES, clock })
  // Writes join the event loop turn's transaction (turn-writes.js). A
  // response may report them, so they commit before it leaves. A /send
  // thus responds only once its record is `sent`.
  app.addHook('onSend', async () => {
    commitTurn(db)
  })
  const deps = { config, sessions, sender, outbox, metrics }
  await app.register(healthRoutes, deps)
  await app.register(sessionRoutes, deps)
  await app.register(messageRoutes, deps)
  await app.register(outboxRoutes, deps)
  await app.register(simRoutes, deps)

  const purgeTimer = setInterval(() => {
    const purged = sends.purgeExpired()
    if (purged) logger.info({ purged }, 'deleted expired send records')
  }, SEND_RECORD_PURGE_MS)
  purgeTimer.unref()

  app.addHook('onReady', async () => {
    sends.purgeExpired()
    outbox.start()
  })

  // Runs after the server has stopped taking requests. Clients are stopped
  // first, so that their final events are in the outbox before it is
  // flushed. No client is logged out. The outbox's drain commits the last
  // turn before the database closes.
  app.addHook('onClose', async () => {
    clearInterval(purgeTimer)
    const deadline = clock() + config.shutdownTimeoutMs
    await sessions.shutdown(Math.floor(config.shutdownTimeoutMs / 2))
    const pending = await outbox.drain(Math.max(0, deadline - clock()))
    if (pending) {
      logger.warn({ pending }, 'outbox not empty at shutdown; the events will be sent after the next start')
    }
    db.close()
  })

  return app
}
