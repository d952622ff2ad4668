// The registry of WhatsApp clients: one engine per user.
//
// It starts, stops, restores and logs out clients, keeps each user's status,
// and turns engine events into callback events in the outbox, in the order
// the engine emitted them (see #dispatch for the one exception).

import { setTimeout as sleep } from 'node:timers/promises'

import { gatewayError } from './errors.js'
import { normalizeJid } from './jid.js'
import { SESSION_STATES } from './metrics.js'

const START_WAIT_MS = 5000

// Disconnect reasons after which the engine has let go of its connection.
const STATE_AFTER_DISCONNECT = {
  qr_timeout: 'qr_expired',
  replaced: 'failed',
  banned: 'failed',
  fatal: 'failed',
  stopped: 'stopped'
}

// States whose client the next boot brings back from its saved auth.
const RESTORED_AFTER_SHUTDOWN = new Set(['connected', 'disconnected'])

class Session {
  constructor (userId, now) {
    this.userId = userId
    this.engine = null
    this.state = 'stopped'
    this.jid = null
    this.phone = null
    this.lid = null
    this.pushName = null
    this.qr = null
    this.qrExpiresAt = null
    this.updatedAt = now
    this.starting = null
    this.restoreTimer = null
    this.sendsInFlight = 0
    // Engine events held back while a send is in flight (see #dispatch).
    this.deferred = null
    this.wiping = null
  }
}

export class SessionManager {
  #config
  #createEngine
  #authStore
  #outbox
  #sends
  #metrics
  #logger
  #clock
  #sessions = new Map()
  #closing = false

  constructor ({ config, createEngine, authStore, outbox, sends, metrics, logger, clock = Date.now }) {
    this.#config = config
    this.#createEngine = createEngine
    this.#authStore = authStore
    this.#outbox = outbox
    this.#sends = sends
    this.#metrics = metrics
    this.#logger = logger
    this.#clock = clock
  }

  get engineName () {
    return this.#config.engine
  }

  get size () {
    return this.#sessions.size
  }

  /** Sessions whose client is running; these count against WA_MAX_SESSIONS. */
  liveCount () {
    let count = 0
    for (const session of this.#sessions.values()) if (session.engine) count += 1
    return count
  }

  sessionCounts () {
    const counts = Object.fromEntries(SESSION_STATES.map((state) => [state, 0]))
    for (const session of this.#sessions.values()) counts[session.state] += 1
    return counts
  }

  status (userId) {
    const session = this.#require(userId)
    const now = this.#clock()
    return {
      user_id: userId,
      state: session.state,
      jid: session.jid,
      phone: session.phone,
      lid: session.lid,
      push_name: session.pushName,
      qr_available: session.state === 'qr_pending' && Boolean(session.qr) && session.qrExpiresAt > now,
      engine: this.#config.engine,
      updated_at: new Date(session.updatedAt).toISOString()
    }
  }

  qr (userId) {
    const session = this.#require(userId)
    const expired = !session.qrExpiresAt || session.qrExpiresAt <= this.#clock()
    if (session.state !== 'qr_pending' || !session.qr || expired) {
      throw gatewayError('GW_ERR_QR_NOT_PENDING', userId, session.state)
    }
    return { qr: session.qr, expires_at: session.qrExpiresAt.toISOString() }
  }

  /** The running engine of a user, or an error for /send and /sim/*. */
  liveEngine (userId) {
    const session = this.#sessions.get(userId)
    if (!session) throw gatewayError('GW_ERR_SESSION_NOT_FOUND', userId)
    if (!session.engine) throw gatewayError('GW_ERR_CLIENT_NOT_READY', userId, session.state)
    return session.engine
  }

  /**
   * Starts the user's client unless it is already running, and returns the
   * state once the engine reports it (or after a few seconds, still
   * `starting`). With `restore`, a client that shows no sign of life within
   * WA_RESTORE_TIMEOUT_MS has its auth wiped.
   */
  async start (userId, { restore = false, waitMs = START_WAIT_MS } = {}) {
    if (this.#closing) throw gatewayError('GW_ERR_SHUTTING_DOWN')

    let session = this.#sessions.get(userId)
    if (session?.engine) return session.state
    if (this.liveCount() >= this.#config.maxSessions) {
      throw gatewayError('GW_ERR_MAX_SESSIONS', this.#config.maxSessions)
    }

    if (!session) {
      session = new Session(userId, this.#clock())
      this.#sessions.set(userId, session)
    }
    const engine = this.#createEngine({
      userId,
      auth: this.#authStore.forUser(userId),
      logger: this.#logger.child({ userId }),
      config: this.#config.engineOptions
    })
    session.engine = engine
    this.#attach(session, engine)
    this.#setState(session, 'starting')
    if (restore) this.#armRestoreTimer(session, engine)

    this.#logger.info({ userId, restore, engine: this.#config.engine }, 'starting WhatsApp client')
    let startError = null
    session.starting = this.#runStart(session, engine, restore).then((error) => {
      startError = error
    })
    await this.#waitFor(session.starting, waitMs)
    if (startError) {
      throw gatewayError('GW_ERR_ENGINE_FAILED', userId, 'the client could not start; see the gateway log')
    }
    return session.state
  }

  /** Closes the user's client and keeps its auth. */
  async stop (userId) {
    const session = this.#sessions.get(userId)
    if (!session) return 'stopped'
    if (session.starting) await session.starting

    const engine = session.engine
    if (engine) {
      try {
        await engine.stop()
      } catch (error) {
        this.#logger.warn({ err: error, userId }, 'engine failed to stop cleanly')
      }
      if (session.engine === engine) {
        // The engine did not report the stop itself.
        this.#release(session)
        this.#setState(session, 'stopped')
        this.#record(session, 'session.disconnected', { reason: 'stopped', will_reconnect: false })
      }
    }
    return session.state
  }

  /** Unlinks the device where possible and deletes the user's auth. */
  async logout (userId) {
    const session = this.#sessions.get(userId)
    if (session?.starting) await session.starting

    const engine = session?.engine
    if (engine) {
      try {
        await engine.logout()
      } catch (error) {
        this.#logger.warn({ err: error, userId }, 'engine logout failed; wiping the auth anyway')
      }
      if (session.engine === engine) {
        this.#release(session)
        engine.stop().catch(() => {})
        await this.#loggedOut(session, 'requested')
      }
      // The engine's logged_out event started the wipe. Respond once it is done.
      await session.wiping
      return 'logged_out'
    }

    const hadAuth = await this.#authStore.has(userId)
    if (session && (hadAuth || session.state !== 'logged_out')) {
      await this.#loggedOut(session, 'requested')
    } else if (hadAuth) {
      await this.#authStore.wipe(userId)
    }
    return 'logged_out'
  }

  /**
   * Starts every user with saved auth, WA_RESTORE_CONCURRENCY at a time, so
   * that a node with hundreds of sessions does not open them all at once.
   */
  async restoreAll () {
    const userIds = await this.#authStore.list()
    if (userIds.length === 0) return
    this.#logger.info({ sessions: userIds.length, concurrency: this.#config.restoreConcurrency }, 'restoring saved sessions')

    let next = 0
    const worker = async () => {
      while (next < userIds.length && !this.#closing) {
        const userId = userIds[next]
        next += 1
        await this.#restore(userId)
      }
    }
    const workers = Math.min(this.#config.restoreConcurrency, userIds.length)
    await Promise.all(Array.from({ length: workers }, worker))
    this.#logger.info({ sessions: userIds.length }, 'restore finished')
  }

  /** Marks a send in flight; engine events that could be its echo wait. */
  beginSend (userId) {
    const session = this.#sessions.get(userId)
    if (session) session.sendsInFlight += 1
  }

  endSend (userId) {
    const session = this.#sessions.get(userId)
    if (!session) return
    session.sendsInFlight -= 1
    if (session.sendsInFlight === 0 && session.deferred) {
      const deferred = session.deferred
      session.deferred = null
      for (const [name, data] of deferred) this.#handle(session, name, data)
    }
  }

  /** Stops every client without logging it out, for a gateway shutdown. */
  async shutdown (timeoutMs) {
    this.#closing = true
    const sessions = [...this.#sessions.values()]
    for (const session of sessions) this.#clearRestoreTimer(session)

    const live = sessions.filter((session) => session.engine)
    if (live.length === 0) return
    this.#logger.info({ sessions: live.length }, 'stopping WhatsApp clients')
    const stops = Promise.allSettled(live.map((session) => this.stop(session.userId)))
    const finished = await this.#waitFor(stops, timeoutMs)
    if (!finished) this.#logger.warn({ timeoutMs }, 'some WhatsApp clients did not stop in time')
  }

  #require (userId) {
    const session = this.#sessions.get(userId)
    if (!session) throw gatewayError('GW_ERR_SESSION_NOT_FOUND', userId)
    return session
  }

  async #waitFor (promise, ms) {
    if (ms === Infinity) {
      await promise
      return true
    }
    const timeout = new AbortController()
    const timer = sleep(ms, false, { signal: timeout.signal }).catch(() => false)
    const finished = await Promise.race([promise.then(() => true), timer])
    timeout.abort()
    return finished
  }

  // Resolves to the error when a start (not a restore) failed, else null.
  async #runStart (session, engine, restore) {
    try {
      await engine.start()
      return null
    } catch (error) {
      if (session.engine !== engine) return null
      if (restore) {
        await this.#restoreFailed(session, engine, error)
        return null
      }
      this.#logger.error({ err: error, userId: session.userId }, 'WhatsApp client failed to start')
      this.#release(session)
      this.#setState(session, 'failed')
      this.#record(session, 'session.disconnected', { reason: 'fatal', will_reconnect: false })
      return error
    } finally {
      session.starting = null
    }
  }

  async #restore (userId) {
    if (this.#sessions.get(userId)?.engine) return
    if (this.liveCount() >= this.#config.maxSessions) {
      this.#logger.warn({ userId, maxSessions: this.#config.maxSessions }, 'not restoring a saved session: WA_MAX_SESSIONS reached')
      const session = new Session(userId, this.#clock())
      this.#sessions.set(userId, session)
      this.#record(session, 'session.disconnected', { reason: 'stopped', will_reconnect: false })
      return
    }
    try {
      await this.start(userId, { restore: true, waitMs: this.#config.restoreTimeoutMs })
    } catch (error) {
      this.#logger.error({ err: error, userId }, 'restoring a saved session failed')
    }
  }

  #armRestoreTimer (session, engine) {
    const timeoutMs = this.#config.restoreTimeoutMs
    session.restoreTimer = setTimeout(() => {
      session.restoreTimer = null
      const error = new Error(`the client showed no connection event within ${timeoutMs} ms`)
      this.#restoreFailed(session, engine, error).catch((err) => {
        this.#logger.error({ err, userId: session.userId }, 'handling a failed restore failed')
      })
    }, timeoutMs)
    session.restoreTimer.unref()
  }

  #clearRestoreTimer (session) {
    if (!session.restoreTimer) return
    clearTimeout(session.restoreTimer)
    session.restoreTimer = null
  }

  // Saved auth that no longer restores would leave the session "starting"
  // for ever, with no QR to offer. Wiping it lets the next /start show a QR.
  async #restoreFailed (session, engine, error) {
    if (session.engine !== engine) return
    this.#logger.warn({ err: error, userId: session.userId }, 'saved session could not be restored; wiping its auth')
    this.#metrics?.restoreFailures.inc()
    this.#release(session)
    engine.stop().catch(() => {})
    await this.#loggedOut(session, 'restore_failed')
  }

  #loggedOut (session, reason) {
    this.#forgetIdentity(session)
    this.#setState(session, 'logged_out')
    this.#logger.info({ userId: session.userId, reason }, 'WhatsApp client logged out')
    this.#record(session, 'session.logged_out', { reason })
    session.wiping = this.#authStore.wipe(session.userId).catch((error) => {
      this.#logger.error({ err: error, userId: session.userId }, 'wiping auth after logout failed')
    })
    return session.wiping
  }

  #attach (session, engine) {
    for (const name of ['qr', 'connected', 'disconnected', 'logged_out', 'message', 'message_update', 'reaction', 'ack', 'lid_mapped']) {
      engine.on(name, (data) => this.#dispatch(session, engine, name, data))
    }
  }

  #release (session) {
    const engine = session.engine
    if (!engine) return
    session.engine = null
    this.#clearRestoreTimer(session)
    engine.removeAllListeners()
  }

  #dispatch (session, engine, name, data) {
    if (session.engine !== engine) return

    // The echo of our own send, or its first ack, can arrive before the
    // engine's send() returns the id that identifies it. Such events wait
    // until the send is recorded. Other events go straight through, so a
    // held ack may land after a later inbound message, which Django's
    // forward-only status rules tolerate.
    const mayBeOwn = name === 'ack' || (name === 'message' && data?.from_me)
    if (mayBeOwn && session.sendsInFlight > 0) {
      session.deferred ??= []
      session.deferred.push([name, data])
      return
    }
    this.#handle(session, name, data)
  }

  #handle (session, name, data) {
    try {
      this.#apply(session, name, data ?? {})
    } catch (error) {
      this.#logger.error({ err: error, userId: session.userId, event: name }, 'failed to record an engine event')
    }
  }

  #apply (session, name, data) {
    switch (name) {
      case 'qr':
        this.#clearRestoreTimer(session)
        session.qr = data.qr
        session.qrExpiresAt = new Date(data.expiresAt)
        this.#setState(session, 'qr_pending')
        this.#record(session, 'session.qr', { qr: data.qr, expires_at: session.qrExpiresAt.toISOString() })
        return
      case 'connected':
        this.#onConnected(session, data)
        return
      case 'disconnected':
        this.#onDisconnected(session, data)
        return
      case 'logged_out':
        this.#clearRestoreTimer(session)
        this.#release(session)
        this.#loggedOut(session, data.reason ?? 'device_removed')
        return
      case 'message':
        this.#onMessage(session, data)
        return
      case 'message_update':
        this.#record(session, 'message.updated', data)
        return
      case 'reaction':
        this.#record(session, 'message.reaction', data)
        return
      case 'ack':
        this.#record(session, 'message.status', {
          gateway_message_id: data.gateway_message_id,
          message_id: this.#sends.messageIdFor(session.userId, data.gateway_message_id),
          chat_jid: data.chat_jid ?? null,
          status: data.status,
          error: data.error ?? null,
          timestamp: data.timestamp ?? null
        })
        return
      case 'lid_mapped':
        this.#record(session, 'contact.lid_mapped', { lid: data.lid, phone: data.phone, jid: data.jid })
    }
  }

  #onConnected (session, data) {
    this.#clearRestoreTimer(session)
    session.jid = normalizeJid(data.jid) ?? data.jid ?? null
    session.phone = data.phone ?? null
    session.lid = data.lid ? normalizeJid(data.lid) : null
    session.pushName = data.pushName ?? null
    session.qr = null
    session.qrExpiresAt = null
    this.#setState(session, 'connected')
    this.#logger.info({ userId: session.userId }, 'WhatsApp client connected')
    this.#record(session, 'session.connected', {
      jid: session.jid,
      phone: session.phone,
      push_name: session.pushName,
      lid: session.lid
    })
  }

  #onDisconnected (session, data) {
    this.#clearRestoreTimer(session)
    let reason = data.reason ?? 'fatal'
    let willReconnect = Boolean(data.willReconnect)
    if (this.#closing && reason === 'stopped' && RESTORED_AFTER_SHUTDOWN.has(session.state)) {
      // A gateway shutdown keeps the auth, and the next boot restores the
      // client, so Django shows it reconnecting and keeps accepting sends.
      reason = 'restart'
      willReconnect = true
    }
    session.qr = null
    session.qrExpiresAt = null

    const state = STATE_AFTER_DISCONNECT[reason] ?? 'disconnected'
    this.#setState(session, willReconnect ? 'disconnected' : state)
    if (!willReconnect || this.#closing) this.#release(session)
    if (willReconnect && !this.#closing) this.#metrics?.reconnects.inc()
    if (reason === 'qr_timeout') {
      // The QR expired unscanned. Creds the engine saved meanwhile must not
      // make the next boot restore the user and post an unprompted QR.
      this.#authStore.wipe(session.userId).catch((error) => {
        this.#logger.error({ err: error, userId: session.userId }, 'failed to wipe unpaired auth after the QR expired')
      })
    }

    this.#logger.info({ userId: session.userId, reason, willReconnect }, 'WhatsApp client disconnected')
    this.#record(session, 'session.disconnected', { reason, will_reconnect: willReconnect })
  }

  #onMessage (session, data) {
    if (data.from_me && this.#sends.isOwnSend(session.userId, data.gateway_message_id)) {
      this.#logger.debug({ userId: session.userId, gatewayMessageId: data.gateway_message_id }, 'dropped the echo of a message sent through /send')
      return
    }
    this.#record(session, 'message.received', data)
  }

  #forgetIdentity (session) {
    session.jid = null
    session.phone = null
    session.lid = null
    session.pushName = null
    session.qr = null
    session.qrExpiresAt = null
  }

  #setState (session, state) {
    session.state = state
    session.updatedAt = this.#clock()
  }

  #record (session, type, data) {
    return this.#outbox.append(session.userId, type, data)
  }
}
