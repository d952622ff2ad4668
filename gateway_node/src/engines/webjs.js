// whatsapp-web.js engine: one headless Chromium running WhatsApp Web per
// subscriber, built for whatsapp-web.js 1.34.7.
//
// The library is CommonJS and loads puppeteer, so it is imported on the first
// start() only. The browser profile lives in the user's auth directory
// (LocalAuth), which keeps the session across gateway restarts. A client
// that whatsapp-web.js destroyed cannot be started again, so every reconnect
// builds a new Client.

import { gatewayError } from '../errors.js'
import { jidToPhone, normalizeJid, toWebjsChatId } from '../jid.js'
import { EngineBase, phoneDigits } from './engine-base.js'
import { TtlCache } from './ttl-cache.js'
import {
  classifyDisconnect,
  mapAck,
  mapEdit,
  mapLidAndPhone,
  mapMessage,
  mapReaction,
  mapRevoke,
  serializeKey
} from './webjs-normalize.js'

const BROWSER_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-dev-shm-usage',
  '--disable-extensions',
  '--no-first-run',
  '--no-default-browser-check'
]

const DEFAULTS = {
  executablePath: '/usr/bin/chromium',
  headless: true,
  reconnectBaseMs: 5_000,
  reconnectMaxMs: 300_000,
  // Failed launches in a row before the session is reported failed.
  maxRetries: 5,
  startTimeoutMs: 60_000
}

const SEEN_TTL_MS = 24 * 60 * 60 * 1000
const SEEN_MAX = 20_000

let library = null

async function loadLibrary () {
  library ??= import('whatsapp-web.js').then(module => module.default ?? module)
  return library
}

async function destroyClient (client, logger) {
  try {
    await client.destroy()
  } catch (err) {
    logger.warn({ err }, 'closing the whatsapp-web.js client failed')
  }
}

export class WebjsEngine extends EngineBase {
  clientName = 'whatsapp-web.js'
  reconnectMessage = 'reconnecting to WhatsApp Web'
  prepareFailedMessage = 'loading whatsapp-web.js failed'

  constructor (options) {
    super(options, DEFAULTS)
    this.client = null
    this.queue = Promise.resolve()
    this.pendingSends = new Set()

    this.ownIds = new TtlCache({ ttlMs: SEEN_TTL_MS, maxEntries: SEEN_MAX })
    this.seenMessages = new TtlCache({ ttlMs: SEEN_TTL_MS, maxEntries: SEEN_MAX })
    this.seenMappings = new TtlCache({ ttlMs: SEEN_TTL_MS, maxEntries: SEEN_MAX })
    this.phoneForLid = new TtlCache({ ttlMs: SEEN_TTL_MS, maxEntries: SEEN_MAX })
  }

  /**
   * Loads whatsapp-web.js before start() launches the browser with the saved
   * profile (LocalAuth), or with a new one that starts pairing.
   */
  async prepareStart () {
    this.library = await loadLibrary()
  }

  #clientOptions () {
    const { config, library } = this
    const LocalAuth = config.LocalAuthClass ?? library.LocalAuth
    const options = {
      authStrategy: new LocalAuth({ clientId: `user_${this.userId}`, dataPath: this.auth.dir }),
      puppeteer: {
        executablePath: config.executablePath,
        headless: config.headless,
        args: BROWSER_ARGS
      },
      qrMaxRetries: config.qrMax ?? 0
    }
    if (config.webVersion) options.webVersion = config.webVersion
    return options
  }

  #openClient () {
    const Client = this.config.ClientClass ?? this.library.Client
    let client
    try {
      client = new Client(this.#clientOptions())
    } catch (err) {
      // A constructor error is a configuration error that no retry fixes.
      this.logger.error({ err }, 'creating the whatsapp-web.js client failed')
      this.setState('failed')
      this.emit('disconnected', { reason: 'fatal', willReconnect: false })
      return
    }
    this.client = client
    this.connectionQrCount = 0
    this.#bind(client)

    client.initialize().catch(err => {
      if (client !== this.client || this.stopping) return
      this.logger.error({ err }, 'starting whatsapp-web.js failed')
      this.client = null
      destroyClient(client, this.logger)
      this.#retryLaunch()
    })
  }

  #bind (client) {
    const on = (event, handler) => {
      client.on(event, (...args) => {
        if (client !== this.client) return
        try {
          handler(...args)
        } catch (err) {
          this.logger.error({ err, event }, 'handling a whatsapp-web.js event failed')
        }
      })
    }
    // Message events go through one queue: LID lookups are asynchronous and
    // must not reorder a chat.
    const queued = (event, handler) => {
      on(event, (...args) => this.#enqueue(event, () => handler(...args)))
    }

    // whatsapp-web.js emits one QR past qrMaxRetries before it disconnects
    // with 'Max qrcode retries reached'. emitQr() never shows that QR and
    // ends the run itself, because a relaunched client counts from zero.
    on('qr', qr => this.emitQr(qr))
    on('ready', () => this.#onReady(client))
    on('auth_failure', () => this.#onAuthFailure())
    on('disconnected', reason => this.#onDisconnected(reason))
    on('change_state', state => this.#onChangeState(state))
    queued('message_create', message => this.#onMessage(message))
    queued('message_ciphertext_failed', message => this.#onMessage(message))
    queued('message_ack', (message, ack) => this.#onAck(message, ack))
    queued('message_edit', (message, newBody, prevBody) => {
      this.#emitIf('message_update', mapEdit(message, newBody, prevBody))
    })
    queued('message_revoke_everyone', message => {
      this.#emitIf('message_update', mapRevoke(message))
    })
    queued('message_reaction', reaction => this.#emitIf('reaction', mapReaction(reaction)))
  }

  #enqueue (event, task) {
    this.queue = this.queue
      .then(task)
      .catch(err => this.logger.error({ err, event }, 'handling a whatsapp-web.js event failed'))
  }

  #emitIf (event, data) {
    if (data) this.emit(event, data)
  }

  #onReady (client) {
    const jid = normalizeJid(client.info?.wid?._serialized ?? client.info?.wid)
    this.self = { jid, phone: jidToPhone(jid), lid: null }
    this.resetReconnect()
    this.#watchBrowser(client)
    this.setState('connected')
    this.logger.info('WhatsApp Web ready')

    this.emit('connected', {
      jid,
      phone: this.self.phone,
      pushName: client.info?.pushname || null,
      lid: null
    })
  }

  // A browser that dies outside a disconnect (a crash, an OOM kill) is a
  // drop like a network error: a new Client reopens the saved profile.
  #watchBrowser (client) {
    const browser = client.pupBrowser
    if (typeof browser?.once !== 'function') return

    browser.once('disconnected', () => {
      if (client !== this.client || this.stopping) return
      this.logger.warn('the Chromium of whatsapp-web.js closed unexpectedly')
      this.client = null
      this.scheduleReconnect('network')
    })
  }

  // LocalAuth never reports a failed restore, but other strategies do, and
  // the library then destroys the client.
  #onAuthFailure () {
    this.logger.warn('restoring the WhatsApp Web session failed')
    this.releaseConnection()
    this.setState('logged_out')
    this.emit('logged_out', { reason: 'restore_failed' })
  }

  #onDisconnected (reason) {
    if (this.stopping) return

    const outcome = classifyDisconnect(reason)
    this.logger.info({ reason, outcome: outcome.reason }, 'WhatsApp Web disconnected')
    this.releaseConnection()
    this.setState(outcome.state)
    if (outcome.event === 'logged_out') {
      this.emit('logged_out', { reason: outcome.reason })
    } else {
      this.emit('disconnected', { reason: outcome.reason, willReconnect: false })
    }
  }

  // WhatsApp Web reconnects by itself inside the page, so TIMEOUT or OPENING
  // while connected means that the phone or the network dropped.
  #onChangeState (state) {
    if ((state === 'TIMEOUT' || state === 'OPENING') && this.state === 'connected') {
      this.setState('disconnected')
      this.emit('disconnected', { reason: 'network', willReconnect: true })
      return
    }
    if (state === 'CONNECTED' && this.state === 'disconnected' && this.self) {
      this.setState('connected')
      const { jid, phone } = this.self
      this.emit('connected', { jid, phone, pushName: null, lid: null })
    }
  }

  openConnection () {
    this.#openClient()
  }

  hasConnection () {
    return this.client !== null
  }

  closeConnection () {
    const client = this.client
    this.client = null
    return client ? destroyClient(client, this.logger) : Promise.resolve()
  }

  #retryLaunch () {
    this.retries += 1
    if (this.retries > this.config.maxRetries) {
      this.setState('failed')
      this.emit('disconnected', { reason: 'fatal', willReconnect: false })
      return
    }
    this.scheduleReconnect('network')
  }

  // Waits for sends in flight, so that their ids are known before an echo
  // or an ack of them is handled.
  async #settleSends () {
    if (this.pendingSends.size === 0) return
    await Promise.allSettled([...this.pendingSends])
    await new Promise(resolve => setImmediate(resolve))
  }

  async #resolveLids (message) {
    const client = this.client
    if (typeof client?.getContactLidAndPhone !== 'function') return

    const candidates = [message.id?.remote, message.from, message.to, message.author]
    const lids = candidates
      .map(value => normalizeJid(value?._serialized ?? value))
      .filter(jid => jid?.endsWith('@lid') && !this.phoneForLid.has(jid))
    if (lids.length === 0) return

    try {
      const mappings = mapLidAndPhone(await client.getContactLidAndPhone([...new Set(lids)]))
      for (const mapping of mappings) {
        this.phoneForLid.set(mapping.lid, mapping.jid)
        if (this.seenMappings.seen(`${mapping.lid} ${mapping.jid}`)) continue
        this.emit('lid_mapped', mapping)
      }
    } catch (err) {
      const messageId = serializeKey(message.id)
      this.logger.warn({ err, messageId }, 'looking up the phone of a LID failed')
    }
  }

  async #onMessage (message) {
    const fromMe = Boolean(message?.fromMe ?? message?.id?.fromMe)
    if (fromMe) await this.#settleSends()

    const id = serializeKey(message?.id)
    if (fromMe && id && this.ownIds.has(id)) return

    await this.#resolveLids(message)
    const context = { self: this.self, phoneForLid: this.phoneForLid, logger: this.logger }
    const data = mapMessage(message, context)
    if (!data) return
    if (this.seenMessages.seen(`${data.gateway_message_id} ${data.kind}`)) return
    this.emit('message', data)
  }

  async #onAck (message, ack) {
    await this.#settleSends()
    this.#emitIf('ack', mapAck(message, ack, { logger: this.logger }))
  }

  async unlinkDevice () {
    const client = this.client
    this.client = null
    try {
      // Also closes the browser and deletes the LocalAuth profile.
      await client.logout()
    } catch (err) {
      const message = 'unlinking the device failed, so only the local auth state is dropped'
      this.logger.warn({ err }, message)
      await destroyClient(client, this.logger)
    }
  }

  #connectedClient () {
    this.assertConnected()
    return this.client
  }

  /** Sends a text message and returns its `id._serialized`. */
  async send ({ to, text }) {
    const client = this.#connectedClient()
    const chatId = toWebjsChatId(to)

    // sendSeen would mark the chat as read on the phone before sending.
    const sending = client.sendMessage(chatId, text, { sendSeen: false }).then(message => {
      const id = serializeKey(message?.id)
      if (id) this.ownIds.set(id, true)
      return { message, id }
    })
    this.pendingSends.add(sending)
    let sent
    try {
      sent = await sending
    } finally {
      this.pendingSends.delete(sending)
    }

    if (!sent.id) {
      const reason = 'whatsapp-web.js returned no message for the chat'
      throw gatewayError('GW_ERR_ENGINE_FAILED', this.userId, reason)
    }
    return { id: sent.id, toJid: normalizeJid(chatId) }
  }

  /** Asks WhatsApp whether a phone number has an account. */
  async lookup (digits) {
    const client = this.#connectedClient()
    const phone = phoneDigits(digits)

    const wid = await client.getNumberId(phone)
    if (!wid) return { exists: false, jid: null }
    return { exists: true, jid: normalizeJid(wid._serialized ?? wid) }
  }
}

/** Creates the whatsapp-web.js engine of one user. */
export function createEngine (options) {
  return new WebjsEngine(options)
}
