import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import { Writable } from 'node:stream'
import { afterEach, describe, it } from 'node:test'

import * as baileys from 'baileys'
import { BufferJSON, DisconnectReason, initAuthCreds, proto } from 'baileys'
import pino from 'pino'
import { WebSocketServer } from 'ws'

import { createEngine, loadAuthState } from '../src/engines/baileys.js'

const SUBSCRIBER_ME = {
  id: '5511900000009:14@s.whatsapp.net',
  lid: '100000000000099:14@lid',
  name: 'Loja'
}
const CUSTOMER_JID = '5511900000001@s.whatsapp.net'

function memoryAuth (initial = {}) {
  const entries = new Map(Object.entries(initial))
  return {
    entries,
    dir: '/nonexistent/user_1',
    async get (name) {
      return entries.has(name) ? entries.get(name) : null
    },
    async set (values) {
      for (const [name, value] of Object.entries(values)) {
        if (value === null) entries.delete(name)
        else entries.set(name, value)
      }
    },
    async has () {
      return entries.has('creds')
    },
    async wipe () {
      entries.clear()
    }
  }
}

function pairedAuth () {
  const creds = { ...initAuthCreds(), me: SUBSCRIBER_ME, account: { details: 'paired' } }
  return memoryAuth({ creds: JSON.stringify(creds, BufferJSON.replacer) })
}

// A pino logger whose JSON lines end up in `lines`, so tests can read fields.
function sinkLogger () {
  const lines = []
  const stream = new Writable({
    write (chunk, encoding, done) {
      for (const text of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(text))
      done()
    }
  })
  const logger = pino({ level: 'debug' }, stream).child({ userId: 1 })
  return { logger, lines }
}

function boom (statusCode, message = 'closed') {
  return Object.assign(new Error(message), { output: { statusCode, payload: { statusCode } } })
}

// Stands in for makeWASocket: one fake socket per call, with the event
// shapes baileys 7 emits. A close removes only the connection.update
// listeners, as baileys 6.7 does, so tests can check that events of a
// replaced socket are ignored.
function fakeSockets ({ lookup = [] } = {}) {
  const sockets = []

  function makeSocket (config) {
    const ev = new EventEmitter()
    const socket = {
      config,
      ev,
      sent: [],
      endCalls: [],
      closed: false,
      get user () {
        return config.auth.creds.me
      },
      async sendMessage (jid, content, options) {
        socket.sent.push({ jid, content, options })
        return {
          key: { remoteJid: jid, fromMe: true, id: options.messageId },
          message: { extendedTextMessage: { text: content.text } },
          status: proto.WebMessageInfo.Status.PENDING
        }
      },
      async onWhatsApp (...phones) {
        socket.lookups = phones
        return lookup
      },
      async logout () {
        socket.loggedOut = true
        socket.close(DisconnectReason.loggedOut)
      },
      async end (error) {
        socket.endCalls.push(error)
        socket.finish(error)
      },
      close (statusCode, message) {
        socket.finish(boom(statusCode, message))
      },
      finish (error) {
        if (socket.closed) return
        socket.closed = true
        ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } })
        ev.removeAllListeners('connection.update')
      },
      emit (event, payload) {
        ev.emit(event, payload)
      },
      open () {
        ev.emit('connection.update', { connection: 'open' })
      },
      qr (text) {
        ev.emit('connection.update', { qr: text })
      }
    }
    sockets.push(socket)
    process.nextTick(() => ev.emit('connection.update', { connection: 'connecting' }))
    return socket
  }

  return { makeSocket, sockets, get last () { return sockets.at(-1) } }
}

function recordEvents (engine) {
  const events = []
  const names = [
    'qr',
    'connected',
    'disconnected',
    'logged_out',
    'message',
    'message_update',
    'reaction',
    'ack',
    'lid_mapped'
  ]
  for (const name of names) engine.on(name, data => events.push({ name, data }))
  return events
}

async function waitFor (check, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met before the deadline')
    await new Promise(resolve => setTimeout(resolve, 2))
  }
}

const engines = []

function buildEngine ({ auth = memoryAuth(), config = {}, lookup } = {}) {
  const fake = fakeSockets({ lookup })
  const { logger, lines } = sinkLogger()
  const engine = createEngine({
    userId: 1,
    auth,
    logger,
    config: {
      makeSocket: fake.makeSocket,
      reconnectBaseMs: 5,
      reconnectMaxMs: 40,
      random: () => 1,
      startTimeoutMs: 50,
      ...config
    }
  })
  engines.push(engine)
  const events = recordEvents(engine)
  return { engine, fake, auth, events, lines }
}

async function connectedEngine (options) {
  const built = buildEngine({ auth: pairedAuth(), ...options })
  const started = built.engine.start()
  await waitFor(() => built.fake.last)
  built.fake.last.open()
  await started
  return built
}

afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.stop()
})

describe('baileys auth state', () => {
  it('starts new users from fresh creds', async () => {
    const auth = memoryAuth()
    const { creds } = await loadAuthState(auth, baileys)

    assert.ok(Buffer.isBuffer(creds.noiseKey.private))
    assert.equal(creds.account, undefined)
  })

  it('saves creds with Buffers that survive the round trip', async () => {
    const auth = memoryAuth()
    const state = await loadAuthState(auth, baileys)
    await state.saveCreds()
    const reloaded = await loadAuthState(auth, baileys)

    assert.ok(Buffer.isBuffer(reloaded.creds.noiseKey.private))
    assert.deepEqual(reloaded.creds.noiseKey.private, state.creds.noiseKey.private)
  })

  it('stores signal keys under type and id', async () => {
    const auth = memoryAuth()
    const { keys } = await loadAuthState(auth, baileys)
    await keys.set({ 'pre-key': { 12: { public: Buffer.from([1, 2]), private: Buffer.from([3]) } } })
    const data = await keys.get('pre-key', ['12', '13'])

    assert.ok(auth.entries.has('pre-key-12'))
    assert.deepEqual(data['12'].public, Buffer.from([1, 2]))
    assert.equal(data['13'], undefined)
  })

  it('deletes a key set to null', async () => {
    const auth = memoryAuth()
    const { keys } = await loadAuthState(auth, baileys)
    await keys.set({ session: { a: { value: 1 } } })
    await keys.set({ session: { a: null } })

    assert.equal(auth.entries.has('session-a'), false)
  })

  it('revives app state sync keys as protobuf objects', async () => {
    const auth = memoryAuth()
    const { keys } = await loadAuthState(auth, baileys)
    await keys.set({
      'app-state-sync-key': { AAAA: { keyData: Buffer.from([9, 9]), timestamp: 1719000000 } }
    })
    const data = await keys.get('app-state-sync-key', ['AAAA'])

    assert.ok(data.AAAA instanceof proto.Message.AppStateSyncKeyData)
    assert.deepEqual(Buffer.from(data.AAAA.keyData), Buffer.from([9, 9]))
  })
})

describe('baileys socket options', () => {
  it('makes a gateway-friendly socket', async () => {
    const { engine, fake } = buildEngine()
    await engine.start()
    const { config } = fake.last

    assert.equal(config.markOnlineOnConnect, false)
    assert.equal(config.syncFullHistory, false)
    assert.equal(config.shouldSyncHistoryMessage({ syncType: 0 }), false)
    assert.deepEqual(config.version, baileys.DEFAULT_CONNECTION_CONFIG.version)
    assert.equal(typeof config.getMessage, 'function')
    assert.equal(typeof config.msgRetryCounterCache.get, 'function')
    assert.equal(config.logger.level, 'silent')
  })

  it('uses a configured version', async () => {
    const { engine, fake } = buildEngine({ config: { version: [2, 3000, 1] } })
    await engine.start()

    assert.deepEqual(fake.last.config.version, [2, 3000, 1])
  })

  it('keeps the retry counter cache across reconnects', async () => {
    const { engine, fake } = await connectedEngine()
    const first = fake.last
    first.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 2)

    assert.equal(fake.last.config.msgRetryCounterCache, first.config.msgRetryCounterCache)
    await engine.stop()
  })

  it('fails when the auth store fails', async () => {
    const auth = memoryAuth()
    auth.get = async () => {
      throw new Error('disk unreadable')
    }
    const { engine } = buildEngine({ auth })

    await assert.rejects(engine.start(), /disk unreadable/)
    assert.equal(engine.state, 'failed')
  })

  it('opens one socket when started twice', async () => {
    const { engine, fake } = buildEngine()
    await Promise.all([engine.start(), engine.start()])

    assert.equal(fake.sockets.length, 1)
  })
})

describe('baileys pairing', () => {
  it('emits QR codes with their expiry', async () => {
    const { engine, fake, events } = buildEngine()
    const started = engine.start()
    await waitFor(() => fake.last)
    const before = Date.now()
    fake.last.qr('2@first')
    await started
    fake.last.qr('2@second')

    const qrs = events.filter(event => event.name === 'qr')
    assert.equal(engine.state, 'qr_pending')
    assert.equal(qrs[0].data.qr, '2@first')
    assert.ok(qrs[0].data.expiresAt.getTime() - before >= 60_000)
    assert.ok(qrs[1].data.expiresAt.getTime() - Date.now() <= 20_000)
  })

  it('saves creds on every creds.update', async () => {
    const { engine, fake, auth } = buildEngine()
    await engine.start()
    fake.last.config.auth.creds.me = SUBSCRIBER_ME
    fake.last.emit('creds.update', { me: SUBSCRIBER_ME })
    await waitFor(() => auth.entries.has('creds'))

    const saved = JSON.parse(auth.entries.get('creds'), BufferJSON.reviver)
    assert.equal(saved.me.id, SUBSCRIBER_ME.id)
  })

  it('restarts silently on 515 after the scan', async () => {
    const { engine, fake, events } = buildEngine()
    await engine.start()
    fake.last.qr('2@first')
    Object.assign(fake.last.config.auth.creds, { me: SUBSCRIBER_ME, account: { details: 'paired' } })
    fake.last.emit('creds.update', { me: SUBSCRIBER_ME })
    fake.last.emit('connection.update', { isNewLogin: true, qr: undefined })
    fake.last.close(DisconnectReason.restartRequired, 'Stream Errored (restart required)')

    assert.equal(fake.sockets.length, 2)
    fake.last.open()

    assert.deepEqual(events.map(event => event.name), ['qr', 'connected'])
    assert.equal(engine.state, 'connected')
  })

  it('reports the subscriber without device suffix', async () => {
    const { events } = await connectedEngine()
    const connected = events.find(event => event.name === 'connected')

    assert.deepEqual(connected.data, {
      jid: '5511900000009@s.whatsapp.net',
      phone: '+5511900000009',
      pushName: 'Loja',
      lid: '100000000000099@lid'
    })
  })

  it('ends with qr_timeout when the QR refs run out', async () => {
    const { engine, fake, events } = buildEngine()
    await engine.start()
    fake.last.qr('2@first')
    fake.last.close(DisconnectReason.timedOut, 'QR refs attempts ended')
    await new Promise(resolve => setTimeout(resolve, 30))

    assert.deepEqual(events.at(-1).data, { reason: 'qr_timeout', willReconnect: false })
    assert.equal(events.at(-1).name, 'disconnected')
    assert.equal(engine.state, 'qr_expired')
    assert.equal(fake.sockets.length, 1)
  })

  it('stops after qrMax QR codes', async () => {
    const { engine, fake, events } = buildEngine({ config: { qrMax: 2 } })
    await engine.start()
    const socket = fake.last
    socket.qr('2@1')
    socket.qr('2@2')
    socket.qr('2@3')

    assert.equal(events.filter(event => event.name === 'qr').length, 2)
    assert.deepEqual(events.at(-1).data, { reason: 'qr_timeout', willReconnect: false })
    assert.equal(engine.state, 'qr_expired')
    assert.deepEqual(socket.endCalls, [undefined])
  })

  it('starts counting QR codes again on a new start', async () => {
    const { engine, fake, events } = buildEngine({ config: { qrMax: 1 } })
    await engine.start()
    fake.last.qr('2@1')
    fake.last.qr('2@2')
    await engine.start()
    fake.last.qr('2@again')

    const qrs = events.filter(event => event.name === 'qr').map(event => event.data.qr)
    assert.deepEqual(qrs, ['2@1', '2@again'])
  })

  it('restores saved creds without a QR', async () => {
    const { events, engine } = await connectedEngine()

    assert.equal(events.some(event => event.name === 'qr'), false)
    assert.equal(engine.state, 'connected')
  })
})

describe('baileys reconnect policy', () => {
  it('reports one network drop for several attempts', async () => {
    const { engine, fake, events } = await connectedEngine()
    fake.last.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 2)
    fake.last.close(DisconnectReason.connectionLost)
    await waitFor(() => fake.sockets.length === 3)
    fake.last.close(DisconnectReason.unavailableService)
    await waitFor(() => fake.sockets.length === 4)

    const drops = events.filter(event => event.name === 'disconnected')
    assert.deepEqual(drops.map(event => event.data), [{ reason: 'network', willReconnect: true }])
    assert.equal(engine.state, 'disconnected')
  })

  it('reports connected again after a drop', async () => {
    const { engine, fake, events } = await connectedEngine()
    fake.last.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 2)
    fake.last.open()

    assert.deepEqual(events.map(event => event.name), ['connected', 'disconnected', 'connected'])
    assert.equal(engine.state, 'connected')
  })

  it('backs off exponentially up to the maximum', async () => {
    const { fake, lines } = await connectedEngine()
    for (let count = 2; count <= 6; count++) {
      fake.last.close(DisconnectReason.connectionClosed)
      await waitFor(() => fake.sockets.length === count)
    }

    const delays = lines.filter(line => line.msg === 'reconnecting to WhatsApp').map(line => line.delayMs)
    assert.deepEqual(delays, [5, 10, 20, 40, 40])
  })

  it('adds jitter to the delay', async () => {
    const { fake, lines } = await connectedEngine({ config: { random: () => 0, reconnectBaseMs: 20 } })
    fake.last.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 2)

    const [line] = lines.filter(item => item.msg === 'reconnecting to WhatsApp')
    assert.equal(line.delayMs, 10)
  })

  it('resets the backoff after a successful open', async () => {
    const { fake, lines } = await connectedEngine()
    fake.last.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 2)
    fake.last.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 3)
    fake.last.open()
    fake.last.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 4)

    const delays = lines.filter(line => line.msg === 'reconnecting to WhatsApp').map(line => line.delayMs)
    assert.deepEqual(delays, [5, 10, 5])
  })

  const terminal = [
    [DisconnectReason.forbidden, 'banned'],
    [DisconnectReason.connectionReplaced, 'replaced'],
    [DisconnectReason.multideviceMismatch, 'fatal']
  ]
  for (const [code, reason] of terminal) {
    it(`fails without reconnecting on ${code}`, async () => {
      const { engine, fake, events } = await connectedEngine()
      fake.last.close(code)
      await new Promise(resolve => setTimeout(resolve, 30))

      assert.deepEqual(events.at(-1), { name: 'disconnected', data: { reason, willReconnect: false } })
      assert.equal(engine.state, 'failed')
      assert.equal(fake.sockets.length, 1)
    })
  }

  it('reports logged_out on 401 and does not reconnect', async () => {
    const { engine, fake, events } = await connectedEngine()
    fake.last.close(DisconnectReason.loggedOut, 'Connection Failure')
    await new Promise(resolve => setTimeout(resolve, 30))

    assert.deepEqual(events.at(-1), { name: 'logged_out', data: { reason: 'device_removed' } })
    assert.equal(engine.state, 'logged_out')
    assert.equal(fake.sockets.length, 1)
  })

  it('stops saving creds once logged out', async () => {
    const { fake, auth } = await connectedEngine()
    const socket = fake.last
    socket.close(DisconnectReason.loggedOut)
    await auth.wipe()
    socket.ev.emit('creds.update', { me: SUBSCRIBER_ME })
    await new Promise(resolve => setTimeout(resolve, 10))

    assert.equal(auth.entries.has('creds'), false)
  })

  it('fails after repeated 500s', async () => {
    const { engine, fake, events } = await connectedEngine({ config: { maxRetries: 2 } })
    fake.last.close(DisconnectReason.badSession)
    await waitFor(() => fake.sockets.length === 2)
    fake.last.close(DisconnectReason.badSession)
    await waitFor(() => fake.sockets.length === 3)
    fake.last.close(DisconnectReason.badSession)
    await new Promise(resolve => setTimeout(resolve, 30))

    const drops = events.filter(event => event.name === 'disconnected').map(event => event.data)
    assert.deepEqual(drops, [
      { reason: 'network', willReconnect: true },
      { reason: 'fatal', willReconnect: false }
    ])
    assert.equal(engine.state, 'failed')
    assert.equal(fake.sockets.length, 3)
  })

  it('falls back to backoff after repeated 515s', async () => {
    const { fake, events } = await connectedEngine({ config: { maxQuickRestarts: 2 } })
    fake.last.close(DisconnectReason.restartRequired)
    fake.last.close(DisconnectReason.restartRequired)
    fake.last.close(DisconnectReason.restartRequired)

    assert.equal(fake.sockets.length, 3)
    assert.deepEqual(events.at(-1).data, { reason: 'restart', willReconnect: true })
    await waitFor(() => fake.sockets.length === 4)
  })

  it('reconnects after a close without status code', async () => {
    const { fake, events } = await connectedEngine()
    fake.last.finish(new Error('socket hang up'))
    await waitFor(() => fake.sockets.length === 2)

    assert.deepEqual(events.at(-1).data, { reason: 'network', willReconnect: true })
  })

  it('ignores events of a socket it replaced', async () => {
    const { fake, events } = await connectedEngine()
    const old = fake.last
    const oldEmitter = old.ev
    old.close(DisconnectReason.connectionClosed)
    await waitFor(() => fake.sockets.length === 2)
    oldEmitter.emit('messages.upsert', {
      type: 'notify',
      messages: [{ key: { remoteJid: CUSTOMER_JID, id: 'LATE' }, message: { conversation: 'late' } }]
    })

    assert.equal(events.some(event => event.name === 'message'), false)
  })
})

describe('baileys stop and logout', () => {
  it('stops without reconnecting', async () => {
    const { engine, fake, events, auth } = await connectedEngine()
    const socket = fake.last
    await engine.stop()
    await new Promise(resolve => setTimeout(resolve, 30))

    assert.deepEqual(socket.endCalls, [undefined])
    assert.deepEqual(events.at(-1), { name: 'disconnected', data: { reason: 'stopped', willReconnect: false } })
    assert.equal(engine.state, 'stopped')
    assert.equal(fake.sockets.length, 1)
    assert.ok(auth.entries.has('creds'))
  })

  it('cancels a pending reconnect on stop', async () => {
    const { engine, fake } = await connectedEngine({ config: { reconnectBaseMs: 30 } })
    fake.last.close(DisconnectReason.connectionClosed)
    await engine.stop()
    await new Promise(resolve => setTimeout(resolve, 60))

    assert.equal(fake.sockets.length, 1)
  })

  it('reports stopped once', async () => {
    const { engine, events } = await connectedEngine()
    await engine.stop()
    await engine.stop()

    assert.equal(events.filter(event => event.data?.reason === 'stopped').length, 1)
  })

  it('unlinks the device on logout', async () => {
    const { engine, fake, events } = await connectedEngine()
    const socket = fake.last
    await engine.logout()
    await new Promise(resolve => setTimeout(resolve, 30))

    assert.equal(socket.loggedOut, true)
    assert.deepEqual(events.at(-1), { name: 'logged_out', data: { reason: 'requested' } })
    assert.equal(events.filter(event => event.name === 'logged_out').length, 1)
    assert.equal(engine.state, 'logged_out')
    assert.equal(fake.sockets.length, 1)
  })

  it('logs out a session that is not connected', async () => {
    const { engine, fake, events } = buildEngine()
    await engine.start()
    fake.last.qr('2@first')
    await engine.logout()

    assert.equal(fake.last.loggedOut, undefined)
    assert.deepEqual(events.at(-1), { name: 'logged_out', data: { reason: 'requested' } })
  })
})

describe('baileys send and lookup', () => {
  it('rejects sends before connecting', async () => {
    const { engine } = buildEngine()
    await engine.start()

    await assert.rejects(engine.send({ to: CUSTOMER_JID, text: 'hi' }), {
      code: 'GW_ERR_CLIENT_NOT_READY'
    })
  })

  it('sends text without link preview', async () => {
    const { engine, fake } = await connectedEngine()
    const result = await engine.send({ to: CUSTOMER_JID, text: 'see https://example.com' })
    const [sent] = fake.last.sent

    assert.match(result.id, /^3EB0[0-9A-F]{18}$/)
    assert.equal(result.toJid, CUSTOMER_JID)
    assert.deepEqual(sent.content, { text: 'see https://example.com', linkPreview: null })
    assert.equal(sent.options.messageId, result.id)
  })

  it('emits the sent ack after send resolves', async () => {
    const { engine, events } = await connectedEngine()
    const result = await engine.send({ to: CUSTOMER_JID, text: 'hi' })

    assert.equal(events.some(event => event.name === 'ack'), false)
    await new Promise(resolve => setImmediate(resolve))
    const ack = events.find(event => event.name === 'ack').data
    assert.equal(ack.gateway_message_id, result.id)
    assert.equal(ack.status, 'sent')
    assert.equal(ack.chat_jid, CUSTOMER_JID)
  })

  it('keeps sent messages for retry requests', async () => {
    const { engine, fake } = await connectedEngine()
    const { id } = await engine.send({ to: CUSTOMER_JID, text: 'hi' })
    const message = await fake.last.config.getMessage({ remoteJid: CUSTOMER_JID, id })

    assert.deepEqual(message, { extendedTextMessage: { text: 'hi' } })
  })

  it('drops the echo of its own send', async () => {
    const { engine, fake, events } = await connectedEngine()
    const { id } = await engine.send({ to: CUSTOMER_JID, text: 'hi' })
    fake.last.emit('messages.upsert', {
      type: 'append',
      messages: [{ key: { remoteJid: CUSTOMER_JID, fromMe: true, id }, message: { conversation: 'hi' } }]
    })

    assert.equal(events.some(event => event.name === 'message'), false)
  })

  it('reports a message typed on the phone', async () => {
    const { fake, events } = await connectedEngine()
    fake.last.emit('messages.upsert', {
      type: 'notify',
      messages: [
        {
          key: { remoteJid: CUSTOMER_JID, fromMe: true, id: '3A0000000000000001' },
          messageTimestamp: 1719000000,
          message: { conversation: 'On my way' }
        }
      ]
    })

    const message = events.find(event => event.name === 'message').data
    assert.equal(message.from_me, true)
    assert.equal(message.peer_phone, '+5511900000001')
    assert.equal(message.sender_jid, '5511900000009@s.whatsapp.net')
  })

  it('returns the JID WhatsApp reports for a number', async () => {
    const { engine, fake } = await connectedEngine({
      lookup: [{ jid: '551100000001@s.whatsapp.net', exists: true }]
    })
    const result = await engine.lookup('+5511900000001')

    assert.deepEqual(fake.last.lookups, ['5511900000001'])
    assert.deepEqual(result, { exists: true, jid: '551100000001@s.whatsapp.net' })
  })

  it('reports an unregistered number', async () => {
    const { engine } = await connectedEngine({ lookup: [] })
    assert.deepEqual(await engine.lookup('5511900000002'), { exists: false, jid: null })
  })

  it('rejects lookups before connecting', async () => {
    const { engine } = buildEngine()
    await engine.start()
    await assert.rejects(engine.lookup('5511900000001'), { code: 'GW_ERR_CLIENT_NOT_READY' })
  })
})

describe('baileys inbound events', () => {
  const stub = {
    key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'DUP1' },
    messageTimestamp: 1719000000,
    messageStubType: 2,
    messageStubParameters: ['No session record']
  }
  const full = {
    key: { remoteJid: CUSTOMER_JID, fromMe: false, id: 'DUP1' },
    messageTimestamp: 1719000000,
    message: { conversation: 'hi' }
  }

  it('passes a stub and then its content once', async () => {
    const { fake, events } = await connectedEngine()
    for (const message of [stub, stub, full, full]) {
      fake.last.emit('messages.upsert', { type: 'notify', messages: [message] })
    }

    const kinds = events.filter(event => event.name === 'message').map(event => event.data.kind)
    assert.deepEqual(kinds, ['undecryptable', 'text'])
  })

  it('emits revokes as message updates', async () => {
    const { fake, events } = await connectedEngine()
    fake.last.emit('messages.upsert', {
      type: 'notify',
      messages: [
        {
          key: { remoteJid: CUSTOMER_JID, id: 'RV01' },
          message: { protocolMessage: { type: 0, key: { id: 'MSG_A' } } }
        }
      ]
    })

    assert.deepEqual(events.map(event => event.name), ['connected', 'message_update'])
  })

  it('emits acks from messages.update', async () => {
    const { fake, events } = await connectedEngine()
    fake.last.emit('messages.update', [
      {
        key: { remoteJid: '5511900000001:3@s.whatsapp.net', fromMe: true, id: '3EB0X1' },
        update: { status: 4 }
      }
    ])

    const ack = events.find(event => event.name === 'ack').data
    assert.equal(ack.status, 'read')
    assert.equal(ack.chat_jid, CUSTOMER_JID)
  })

  it('emits acks from group receipts', async () => {
    const { fake, events } = await connectedEngine()
    fake.last.emit('message-receipt.update', [
      {
        key: { remoteJid: '120363000000000002@g.us', fromMe: true, id: '3EB0G1' },
        receipt: { userJid: CUSTOMER_JID, readTimestamp: 1719000000 }
      }
    ])

    assert.equal(events.find(event => event.name === 'ack').data.status, 'read')
  })

  it('emits each LID mapping once', async () => {
    const { fake, events } = await connectedEngine()
    const mapping = { lid: '100000000000001@lid', pn: CUSTOMER_JID }
    fake.last.emit('lid-mapping.update', mapping)
    fake.last.emit('lid-mapping.update', mapping)

    const mapped = events.filter(event => event.name === 'lid_mapped')
    assert.deepEqual(mapped.map(event => event.data), [
      { lid: '100000000000001@lid', phone: '+5511900000001', jid: CUSTOMER_JID }
    ])
  })

  it('never logs message text', async () => {
    const { fake, lines } = await connectedEngine()
    fake.last.emit('messages.upsert', {
      type: 'notify',
      messages: [
        {
          key: { remoteJid: '120363000000000001@newsletter', id: 'NL1' },
          message: { conversation: 'private words' }
        },
        { key: { remoteJid: CUSTOMER_JID, id: 'T1' }, message: { conversation: 'private words' } }
      ]
    })

    assert.equal(JSON.stringify(lines).includes('private words'), false)
  })
})

describe('baileys wiring against a local server', () => {
  it('connects, sends its first frame and reconnects after a close', async () => {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await once(server, 'listening')
    const frames = []
    server.on('connection', socket => {
      socket.once('message', data => {
        frames.push(Buffer.from(data))
        socket.close()
      })
    })

    const { logger } = sinkLogger()
    const engine = createEngine({
      userId: 1,
      auth: memoryAuth(),
      logger,
      config: {
        waWebSocketUrl: `ws://127.0.0.1:${server.address().port}/ws/chat`,
        reconnectBaseMs: 60_000,
        startTimeoutMs: 5_000
      }
    })
    engines.push(engine)
    const disconnected = once(engine, 'disconnected')

    try {
      await engine.start()
      const [event] = await disconnected

      assert.deepEqual([...frames[0].subarray(0, 4)], [0x57, 0x41, 6, 3])
      assert.deepEqual(event, { reason: 'network', willReconnect: true })
      assert.equal(engine.state, 'disconnected')
      assert.ok(engine.reconnectTimer)
    } finally {
      await engine.stop()
      server.close()
    }
  })
})
