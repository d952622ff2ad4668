// Base class of the Baileys and whatsapp-web.js engines: the session state,
// the wait for the first state after start(), and reconnects with exponential
// backoff and jitter that report each outage once.
//
// A subclass defines prepareStart(), openConnection(), hasConnection(),
// closeConnection() and unlinkDevice(), and sets `clientName`,
// `reconnectMessage` and `prepareFailedMessage` for logs.

import { EventEmitter } from 'node:events'

import { gatewayError } from '../errors.js'

// Baileys shows the first QR of a connection for 60 s and each later one for
// 20 s (lib/Socket/socket.js, the `pair-device` handler).
// NOTE: whatsapp-web.js does not say how long a QR lasts, so its engine uses
// the same lifetimes.
const FIRST_QR_TTL_MS = 60_000
const NEXT_QR_TTL_MS = 20_000

export const TERMINAL_STATES = new Set(['stopped', 'logged_out', 'failed', 'qr_expired'])

export class EngineBase extends EventEmitter {
  #state = 'stopped'
  #stateWaiters = []

  constructor ({ userId, auth, logger, config = {} }, defaults = {}) {
    super()
    this.userId = userId
    this.auth = auth
    this.logger = logger
    this.config = { ...defaults, ...config }
    this.random = this.config.random ?? Math.random

    this.reconnectTimer = null
    this.opening = false
    this.stopping = false
    this.self = null
  }

  get state () {
    return this.#state
  }

  setState (state) {
    this.#state = state
    if (state === 'starting') return

    const waiters = this.#stateWaiters
    this.#stateWaiters = []
    for (const resolve of waiters) resolve()
  }

  /** Resolves once a state other than `starting` is set, or after `startTimeoutMs`. */
  waitForFirstState () {
    return new Promise(resolve => {
      const timer = setTimeout(resolve, this.config.startTimeoutMs)
      this.#stateWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /**
   * Opens the connection with the saved auth state, or starts pairing when
   * there is none. Resolves once the first state is known (a QR, connected,
   * or a disconnect), or after `startTimeoutMs`. Does nothing while running.
   */
  async start () {
    if (this.hasConnection() || this.reconnectTimer || this.opening) return

    this.beginStart()

    try {
      await this.prepareStart()
    } catch (err) {
      this.logger.error({ err }, this.prepareFailedMessage)
      this.setState('failed')
      throw err
    } finally {
      this.opening = false
    }
    if (this.stopping) return

    const firstState = this.waitForFirstState()
    this.openConnection()
    await firstState
  }

  /** Resets the counters of the last run and enters `starting`. */
  beginStart () {
    this.opening = true
    this.stopping = false
    this.qrCount = 0
    this.retries = 0
    this.reconnectAttempt = 0
    this.dropReported = false
    this.setState('starting')
    this.logger.info(`starting the ${this.clientName} client`)
  }

  /** Resets the reconnect counters once a connection is open. */
  resetReconnect () {
    this.retries = 0
    this.reconnectAttempt = 0
    this.dropReported = false
  }

  /** Emits a QR, or ends the run with `qr_expired` once `qrMax` QRs were shown. */
  emitQr (qr) {
    this.qrCount += 1
    if (this.config.qrMax && this.qrCount > this.config.qrMax) {
      this.logger.info({ qrMax: this.config.qrMax }, 'QR limit reached, closing the client')
      this.finish('qr_expired', 'qr_timeout')
      return
    }

    const ttlMs = this.connectionQrCount === 0 ? FIRST_QR_TTL_MS : NEXT_QR_TTL_MS
    this.connectionQrCount += 1
    this.setState('qr_pending')
    this.emit('qr', { qr, expiresAt: new Date(Date.now() + ttlMs) })
  }

  /** Closes the connection and ends the run in `state` without reconnecting. */
  finish (state, reason) {
    this.releaseConnection()
    this.setState(state)
    this.emit('disconnected', { reason, willReconnect: false })
  }

  backoffDelay () {
    const { reconnectBaseMs, reconnectMaxMs } = this.config
    const ceiling = Math.min(reconnectMaxMs, reconnectBaseMs * 2 ** (this.reconnectAttempt - 1))
    return Math.round(ceiling / 2 + (ceiling / 2) * this.random())
  }

  scheduleReconnect (reason) {
    this.reconnectAttempt += 1
    const delayMs = this.backoffDelay()
    const attempt = this.reconnectAttempt
    this.logger.info({ attempt, delayMs, reason }, this.reconnectMessage)

    // One report per drop: the attempts that follow are the same outage.
    if (!this.dropReported) {
      this.dropReported = true
      this.setState('disconnected')
      this.emit('disconnected', { reason, willReconnect: true })
    }

    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      if (!this.stopping) this.openConnection()
    }, delayMs)
  }

  /** Cancels a pending reconnect and closes the connection, if any. */
  releaseConnection () {
    clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    return this.closeConnection()
  }

  /** Closes the connection and keeps the auth state for the next start(). */
  async stop () {
    this.stopping = true
    const wasRunning = !TERMINAL_STATES.has(this.#state) || this.hasConnection()
    await this.releaseConnection()
    if (!wasRunning) return

    this.logger.info(`stopped the ${this.clientName} client`)
    this.setState('stopped')
    this.emit('disconnected', { reason: 'stopped', willReconnect: false })
  }

  /** Unlinks this device from the phone and ends with `logged_out`. */
  async logout () {
    this.stopping = true
    if (this.hasConnection() && this.#state === 'connected') await this.unlinkDevice()
    await this.releaseConnection()

    this.logger.info(`logged out the ${this.clientName} client`)
    this.setState('logged_out')
    this.emit('logged_out', { reason: 'requested' })
  }

  /** Throws GW_ERR_CLIENT_NOT_READY unless the connection is open. */
  assertConnected () {
    if (!this.hasConnection() || this.#state !== 'connected') {
      throw gatewayError('GW_ERR_CLIENT_NOT_READY', this.userId, this.#state)
    }
  }
}

/** Returns the digits of a phone number, or throws GW_ERR_INVALID_PHONE when there are none. */
export function phoneDigits (value) {
  const phone = String(value ?? '').replace(/\D/g, '')
  if (!phone) throw gatewayError('GW_ERR_INVALID_PHONE', JSON.stringify(value))
  return phone
}
