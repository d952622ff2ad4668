// Baileys engine: one WhatsApp Web multi-device socket per subscriber, built
// for baileys 7.0.0-rc14.
//
// Baileys is ESM-only and heavy to load, so it is imported on the first
// start() and never by the sim engine. A Baileys socket serves one
// connection: every reconnect makes a new socket from the saved auth state.

import pino from 'pino'

import { jidToPhone, normalizeJid } from '../jid.js'
import { EngineBase, phoneDigits } from './engine-base.js'
import { TtlCache } from './ttl-cache.js'

const DEFAULTS = {
  reconnectBaseMs: 2_000,
  reconnectMaxMs: 120_000,
  // Closes that may be a broken session (500, unknown codes) before the
  // session is reported failed.
  maxRetries: 5,
  // 515 restarts in a row before they are treated like a network drop.
  maxQuickRestarts: 3,
  startTimeoutMs: 30_000,
  libraryLogLevel: 'silent'
}

// Sent messages are kept so Baileys can encrypt them again when a
// recipient's device requests a retry.
const SENT_MESSAGE_TTL_MS = 6 * 60 * 60 * 1000
const SENT_MESSAGE_MAX = 2_000
// Baileys keeps retry counters for an hour (DEFAULT_CACHE_TTLS.MSG_RETRY).
const RETRY_COUNTER_TTL_MS = 60 * 60 * 1000
const RETRY_COUNTER_MAX = 10_000
const SEEN_TTL_MS = 24 * 60 * 60 * 1000
const SEEN_MAX = 20_000

const CREDS_NAME = 'creds'

let modules = null

async function loadModules () {
  modules ??= Promise.all([import('baileys'), import('./baileys-normalize.js')])
    .then(([baileys, normalize]) => ({ baileys, normalize }))
  return modules
}

function keyName (type, id) {
  return `${type}-${id}`
}

/**
 * Builds Baileys' AuthenticationState on the per-user auth store: the creds
 * under `creds` and each signal key under `<type>-<id>`, as BufferJSON text.
 */
export async function loadAuthState (auth, baileys) {
  const { BufferJSON, initAuthCreds, proto } = baileys
  const encode = value => JSON.stringify(value, BufferJSON.replacer)
  const decode = text => (text == null ? null : JSON.parse(text, BufferJSON.reviver))

  const creds = decode(await auth.get(CREDS_NAME)) ?? initAuthCreds()

  const keys = {
    async get (type, ids) {
      const values = await Promise.all(ids.map(id => auth.get(keyName(type, id))))
      const data = {}
      ids.forEach((id, index) => {
        let value = decode(values[index])
        if (value && type === 'app-state-sync-key') {
          value = proto.Message.AppStateSyncKeyData.fromObject(value)
        }
        if (value != null) data[id] = value
      })
      return data
    },

    async set (data) {
      const entries = {}
      for (const [type, values] of Object.entries(data)) {
        for (const [id, value] of Object.entries(values ?? {})) {
          entries[keyName(type, id)] = value == null ? null : encode(value)
        }
      }
      if (Object.keys(entries).length) await auth.set(entries)
    }
  }

  const saveCreds = () => auth.set({ [CREDS_NAME]: encode(creds) })
  return { creds, keys, saveCreds }
}

function readSelf (me) {
  if (!me?.id) return null
  return {
    jid: normalizeJid(me.id),
    phone: jidToPhone(me.id),
    lid: normalizeJid(me.lid)
  }
}

function makeLibraryLogger (logger, level) {
  if (typeof logger?.child === 'function') {
    return logger.child({ module: 'baileys' }, { level })
  }
  return pino({ level: 'silent' })
}

async function endSocket (socket, logger) {
  try {
    await socket.end(undefined)
  } catch (err) {
    logger.warn({ err }, 'closing the Baileys socket failed')
  }
}

export class BaileysEngine extends EngineBase {
  clientName = 'Baileys'
  reconnectMessage = 'reconnecting to WhatsApp'
  prepareFailedMessage = 'loading Baileys or the auth state failed'

  constructor (options) {
    super(options, DEFAULTS)
    const { logger } = options
    this.socket = null

    this.libraryLogger = makeLibraryLogger(logger, this.config.libraryLogLevel)
    this.sentMessages = new TtlCache({ ttlMs: SENT_MESSAGE_TTL_MS, maxEntries: SENT_MESSAGE_MAX })
    this.ownIds = new TtlCache({ ttlMs: SEEN_TTL_MS, maxEntries: SEEN_MAX })
    this.seenMessages = new TtlCache({ ttlMs: SEEN_TTL_MS, maxEntries: SEEN_MAX })
    this.seenMappings = new TtlCache({ ttlMs: SEEN_TTL_MS, maxEntries: SEEN_MAX })
    // Outside the socket so that retry counts survive reconnects.
    this.retryCounters = new TtlCache({
      ttlMs: RETRY_COUNTER_TTL_MS,
      maxEntries: RETRY_COUNTER_MAX
    })
  }

  /** Loads Baileys and the saved auth state before start() opens a socket. */
  async prepareStart () {
    this.restarts = 0

    const { baileys, normalize } = await loadModules()
    this.baileys = baileys
    this.normalize = normalize
    this.makeSocket = this.config.makeSocket ?? baileys.makeWASocket
    this.authState = await loadAuthState(this.auth, baileys)
    this.signalKeys = baileys.makeCacheableSignalKeyStore(
      this.authState.keys,
      this.libraryLogger
    )
    this.self = readSelf(this.authState.creds.me)
  }

  #socketConfig () {
    const { baileys, config } = this
    const socketConfig = {
      version: config.version ?? baileys.DEFAULT_CONNECTION_CONFIG.version,
      browser: baileys.Browsers.macOS(config.browserName ?? 'Chrome'),
      auth: { creds: this.authState.creds, keys: this.signalKeys },
      logger: this.libraryLogger,
      markOnlineOnConnect: false,
      syncFullHistory: false,
      // NOTE: baileys 7 warns that skipping every history sync withholds the
      // initial LID mappings and may cause session errors. The gateway
      // forwards no history and relies on lid-mapping updates and USync
      // lookups instead, which has not been tried against WhatsApp itself.
      shouldSyncHistoryMessage: () => false,
      getMessage: async key => this.sentMessages.get(key.id),
      msgRetryCounterCache: this.retryCounters
    }
    if (config.waWebSocketUrl) socketConfig.waWebSocketUrl = config.waWebSocketUrl
    if (config.connectTimeoutMs) socketConfig.connectTimeoutMs = config.connectTimeoutMs
    return socketConfig
  }

  #openSocket () {
    let socket
    try {
      socket = this.makeSocket(this.#socketConfig())
    } catch (err) {
      this.logger.error({ err }, 'creating the Baileys socket failed')
      this.#handleClose({ error: err })
      return
    }

    this.socket = socket
    this.connectionQrCount = 0
    this.#bind(socket)
  }

  #bind (socket) {
    const on = (event, handler) => {
      socket.ev.on(event, payload => {
        if (socket !== this.socket) return
        try {
          handler(payload)
        } catch (err) {
          this.logger.error({ err, event }, 'handling a Baileys event failed')
        }
      })
    }
    const { normalize } = this

    // Creds are saved even from a socket that is closing, because Baileys
    // rotates keys up to the last frame.
    socket.ev.on('creds.update', () => this.#saveCreds())
    on('connection.update', update => this.#onConnectionUpdate(update, socket))
    on('messages.upsert', upsert => this.#onMessagesUpsert(upsert))
    on('messages.update', updates => {
      const context = { logger: this.logger }
      this.#emitAll('ack', normalize.mapMessagesUpdate(updates, context))
    })
    on('message-receipt.update', updates => {
      this.#emitAll('ack', normalize.mapReceiptUpdate(updates))
    })
    on('lid-mapping.update', mapping => {
      this.#emitMappings([normalize.mapLidMapping(mapping)])
    })
    on('chats.phoneNumberShare', share => {
      this.#emitMappings([normalize.mapPhoneNumberShare(share)])
    })
    on('contacts.upsert', contacts => {
      this.#emitMappings(normalize.mapContactMappings(contacts))
    })
    on('contacts.update', contacts => {
      this.#emitMappings(normalize.mapContactMappings(contacts))
    })
  }

  #saveCreds () {
    // After a logout the core wipes the auth store. Writing the creds again
    // would bring the unlinked device back on the next start.
    if (this.state === 'logged_out') return

    this.credsWrite = (this.credsWrite ?? Promise.resolve())
      .then(() => {
        if (this.state !== 'logged_out') return this.authState.saveCreds()
      })
      .catch(err => this.logger.error({ err }, 'saving Baileys creds failed'))
  }

  #emitAll (event, items) {
    for (const item of items) this.emit(event, item)
  }

  #emitMappings (mappings) {
    for (const mapping of mappings) {
      if (!mapping) continue
      if (this.seenMappings.seen(`${mapping.lid} ${mapping.jid}`)) continue
      this.emit('lid_mapped', mapping)
    }
  }

  #onMessagesUpsert (upsert) {
    const context = { self: this.self, logger: this.logger }
    for (const { type, data } of this.normalize.mapMessagesUpsert(upsert, context)) {
      if (type === 'message' && this.#isRepeat(data)) continue
      this.emit(type, data)
    }
  }

  // Drops the echo of a message this engine sent and any message seen
  // before with the same content kind. A failed-decryption stub followed by
  // the real content has two kinds, so both get through.
  #isRepeat (message) {
    const id = message.gateway_message_id
    if (message.from_me && this.ownIds.has(id)) return true
    return this.seenMessages.seen(`${message.from_me} ${id} ${message.kind}`)
  }

  #onConnectionUpdate (update, socket) {
    if (typeof update.qr === 'string' && update.qr) this.emitQr(update.qr)
    if (update.isNewLogin) this.setState('starting')
    if (update.connection === 'open') this.#onOpen(socket)
    if (update.connection === 'close') this.#handleClose(update.lastDisconnect)
  }

  #onOpen (socket) {
    const me = this.authState.creds.me ?? socket.user
    this.self = readSelf(me)
    this.qrCount = 0
    this.restarts = 0
    this.resetReconnect()
    this.setState('connected')
    this.logger.info('WhatsApp connection open')

    this.emit('connected', {
      jid: this.self?.jid ?? null,
      phone: this.self?.phone ?? null,
      pushName: me?.name || null,
      lid: this.self?.lid ?? null
    })
  }

  #handleClose (lastDisconnect) {
    this.socket = null
    if (this.stopping) return

    const statusCode = this.normalize.closeStatusCode(lastDisconnect)
    const decision = this.normalize.classifyClose({
      statusCode,
      paired: Boolean(this.authState.creds.account),
      qrShown: this.qrCount > 0
    })
    this.logger.info({ statusCode, action: decision.action }, 'WhatsApp connection closed')

    switch (decision.action) {
      case 'logout':
        return this.#finishLoggedOut(decision.reason)
      case 'fail':
        return this.finish('failed', decision.reason)
      case 'qr_timeout':
        return this.finish('qr_expired', decision.reason)
      case 'restart':
        return this.#restart()
      case 'retry':
        this.retries += 1
        if (this.retries > this.config.maxRetries) return this.finish('failed', 'fatal')
        return this.scheduleReconnect(decision.reason)
      default:
        return this.scheduleReconnect(decision.reason)
    }
  }

  // WhatsApp requests a restart (515) right after pairing. The new socket
  // logs in with the fresh creds, and no event reports the gap.
  #restart () {
    this.restarts += 1
    if (this.restarts > this.config.maxQuickRestarts) {
      this.scheduleReconnect('restart')
      return
    }
    this.logger.info({ restarts: this.restarts }, 'restarting the Baileys socket')
    this.#openSocket()
  }

  openConnection () {
    this.#openSocket()
  }

  hasConnection () {
    return this.socket !== null
  }

  closeConnection () {
    const socket = this.socket
    this.socket = null
    return socket ? endSocket(socket, this.logger) : Promise.resolve()
  }

  #finishLoggedOut (reason) {
    this.releaseConnection()
    this.setState('logged_out')
    this.emit('logged_out', { reason })
  }

  async unlinkDevice () {
    try {
      await this.socket.logout()
    } catch (err) {
      const message = 'unlinking the device failed, so only the local auth state is dropped'
      this.logger.warn({ err }, message)
    }
  }

  #connectedSocket () {
    this.assertConnected()
    return this.socket
  }

  /**
   * Sends a text message and returns its id. Baileys emits no event for the
   * server ack, so the `sent` ack is emitted here once sendMessage resolves.
   */
  async send ({ to, text }) {
    const socket = this.#connectedSocket()
    const id = this.baileys.generateMessageIDV2(socket.user?.id)
    this.ownIds.set(id, true)

    // linkPreview: null stops Baileys from fetching the URLs in the text.
    const sent = await socket.sendMessage(to, { text, linkPreview: null }, { messageId: id })
    if (sent?.message) this.sentMessages.set(id, sent.message)

    const toJid = normalizeJid(sent?.key?.remoteJid ?? to) ?? to
    const ack = {
      gateway_message_id: id,
      chat_jid: toJid,
      status: 'sent',
      error: null,
      timestamp: new Date().toISOString()
    }
    // Emitted after send() has resolved, so the caller can record the id
    // before the ack that carries it arrives.
    setImmediate(() => this.emit('ack', ack))
    return { id, toJid }
  }

  /** Asks WhatsApp whether a phone number has an account. */
  async lookup (digits) {
    const socket = this.#connectedSocket()
    const phone = phoneDigits(digits)

    // onWhatsApp leaves numbers without an account out of its result.
    const results = (await socket.onWhatsApp(phone)) ?? []
    const match = results.find(result => result.exists)
    if (!match) return { exists: false, jid: null }
    return { exists: true, jid: normalizeJid(match.jid) }
  }
}

/** Creates the Baileys engine of one user. */
export function createEngine (options) {
  return new BaileysEngine(options)
}
