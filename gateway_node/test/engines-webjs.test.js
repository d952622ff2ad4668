import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'
import { Writable } from 'node:stream'
import { afterEach, describe, it } from 'node:test'

import pino from 'pino'

import { createEngine } from '../src/engines/webjs.js'

const require = createRequire(import.meta.url)
const wweb = require('whatsapp-web.js')
const { Events, MessageAck, WAState } = wweb

const CUSTOMER_JID = '5511900000001@s.whatsapp.net'
const EVENT_NAMES = [
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

function inboundKey (remote, id) {
  return { fromMe: false, remote, id, _serialized: `false_${remote}_${id}` }
}

function sinkLogger () {
  const lines = []
  const stream = new Writable({
    write (chunk, encoding, done) {
      for (const text of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(text))
      done()
    }
  })
  return { logger: pino({ level: 'debug' }, stream).child({ userId: 7 }), lines }
}

// A stand-in for whatsapp-web.js' Client: the same constructor options,
// methods and events, with no browser behind it.
function fakeClientClass ({ numbers = {}, lidPhones = {}, failInitialize = false } = {}) {
  const instances = []
  let sequence = 0

  class FakeClient extends EventEmitter {
    constructor (options) {
      super()
      this.options = options
      this.sent = []
      this.destroyCalls = 0
      this.pupBrowser = new EventEmitter()
      instances.push(this)
    }

    async initialize () {
      this.initialized = true
      if (failInitialize) throw new Error('Failed to launch the browser process')
    }

    async sendMessage (chatId, content, options) {
      sequence += 1
      const id = `3EB0${String(sequence).padStart(18, '0')}`
      this.sent.push({ chatId, content, options })
      this.pendingEcho = { chatId, id, content }
      return new wweb.Message(this, {
        id: { fromMe: true, remote: chatId, id, _serialized: `true_${chatId}_${id}` },
        from: '5511900000009@c.us',
        to: chatId,
        body: content,
        type: 'chat',
        t: 1719000000
      })
    }

    async getNumberId (number) {
      const serialized = numbers[number]
      if (!serialized) return null
      const [user, server] = serialized.split('@')
      return { server, user, _serialized: serialized }
    }

    async getContactLidAndPhone (ids) {
      this.lidLookups = (this.lidLookups ?? 0) + 1
      return ids.map(lid => ({ lid, pn: lidPhones[lid] }))
    }

    async logout () {
      this.loggedOut = true
    }

    async destroy () {
      this.destroyCalls += 1
    }

    becomeReady () {
      this.info = {
        pushname: 'Loja',
        wid: { server: 'c.us', user: '5511900000009', _serialized: '5511900000009@c.us' }
      }
      this.emit(Events.AUTHENTICATED)
      this.emit(Events.READY)
    }

    receive (data) {
      const message = new wweb.Message(this, { type: 'chat', t: 1719000000, ...data })
      this.emit(Events.MESSAGE_CREATE, message)
      return message
    }
  }

  return { FakeClient, instances, get last () { return instances.at(-1) } }
}

const engines = []

function buildEngine ({ config = {}, ...clientOptions } = {}) {
  const fake = fakeClientClass(clientOptions)
  const { logger, lines } = sinkLogger()
  const engine = createEngine({
    userId: 7,
    auth: { dir: '/tmp/wa-test-auth/user_7' },
    logger,
    config: {
      ClientClass: fake.FakeClient,
      reconnectBaseMs: 5,
      reconnectMaxMs: 40,
      random: () => 1,
      startTimeoutMs: 50,
      ...config
    }
  })
  engines.push(engine)
  const events = []
  for (const name of EVENT_NAMES) {
    engine.on(name, data => events.push({ name, data }))
  }
  return { engine, fake, events, lines }
}

async function readyEngine (options) {
  const built = buildEngine(options)
  const started = built.engine.start()
  await waitFor(() => built.fake.last)
  built.fake.last.becomeReady()
  await started
  return built
}

async function waitFor (check, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met before the deadline')
    await new Promise(resolve => setTimeout(resolve, 2))
  }
}

function settle () {
  return new Promise(resolve => setTimeout(resolve, 10))
}

afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.stop()
})

describe('webjs client options', () => {
  it('stores the profile with LocalAuth in the user directory', async () => {
    const { engine, fake } = buildEngine()
    await engine.start()
    const { authStrategy } = fake.last.options

    assert.ok(authStrategy instanceof wweb.LocalAuth)
    assert.equal(authStrategy.clientId, 'user_7')
    assert.equal(authStrategy.dataPath, '/tmp/wa-test-auth/user_7')
  })

  it('launches Debian chromium headless without a sandbox', async () => {
    const { engine, fake } = buildEngine()
    await engine.start()
    const { puppeteer } = fake.last.options

    assert.equal(puppeteer.executablePath, '/usr/bin/chromium')
    assert.equal(puppeteer.headless, true)
    assert.ok(puppeteer.args.includes('--no-sandbox'))
    assert.ok(puppeteer.args.includes('--disable-gpu'))
    assert.ok(puppeteer.args.includes('--disable-background-networking'))
  })

  it('passes the configured browser path and QR limit', async () => {
    const { engine, fake } = buildEngine({ config: { executablePath: '/opt/chrome', qrMax: 4 } })
    await engine.start()

    assert.equal(fake.last.options.puppeteer.executablePath, '/opt/chrome')
    assert.equal(fake.last.options.qrMaxRetries, 4)
  })

  it('fails for a client it cannot construct', async () => {
    const { engine, events } = buildEngine({
      config: {
        ClientClass: class {
          constructor () {
            throw new Error('LocalAuth is not compatible with a user-supplied userDataDir.')
          }
        }
      }
    })
    await engine.start()

    assert.deepEqual(events.at(-1).data, { reason: 'fatal', willReconnect: false })
    assert.equal(engine.state, 'failed')
  })

  it('initialises one client when started twice', async () => {
    const { engine, fake } = buildEngine()
    await Promise.all([engine.start(), engine.start()])

    assert.equal(fake.instances.length, 1)
    assert.equal(fake.last.initialized, true)
  })
})

describe('webjs lifecycle', () => {
  it('emits QR codes with their expiry', async () => {
    const { engine, fake, events } = buildEngine()
    const started = engine.start()
    await waitFor(() => fake.last)
    const before = Date.now()
    fake.last.emit(Events.QR_RECEIVED, '2@ref,key,identity,adv,platform')
    await started
    fake.last.emit(Events.QR_RECEIVED, '2@ref2,key,identity,adv,platform')

    const qrs = events.filter(event => event.name === 'qr')
    assert.equal(engine.state, 'qr_pending')
    assert.ok(qrs[0].data.expiresAt.getTime() - before >= 60_000)
    assert.ok(qrs[1].data.expiresAt.getTime() - Date.now() <= 20_000)
  })

  it('reports the account once ready', async () => {
    const { engine, events } = await readyEngine()

    assert.deepEqual(events.at(-1), {
      name: 'connected',
      data: { jid: '5511900000009@s.whatsapp.net', phone: '+5511900000009', pushName: 'Loja', lid: null }
    })
    assert.equal(engine.state, 'connected')
  })

  it('hides the QR past the limit and ends with qr_timeout', async () => {
    const { engine, fake, events } = buildEngine({ config: { qrMax: 2 } })
    await engine.start()
    const client = fake.last
    for (const qr of ['q1', 'q2', 'q3']) client.emit(Events.QR_RECEIVED, qr)
    client.emit(Events.DISCONNECTED, 'Max qrcode retries reached')

    assert.deepEqual(events.filter(event => event.name === 'qr').map(event => event.data.qr), ['q1', 'q2'])
    assert.deepEqual(events.at(-1).data, { reason: 'qr_timeout', willReconnect: false })
    assert.equal(engine.state, 'qr_expired')
    assert.equal(client.destroyCalls, 1)
  })

  it('reports a phone logout as logged_out', async () => {
    const { engine, fake, events } = await readyEngine()
    fake.last.emit(Events.DISCONNECTED, 'LOGOUT')

    assert.deepEqual(events.at(-1), { name: 'logged_out', data: { reason: 'device_removed' } })
    assert.equal(engine.state, 'logged_out')
    assert.equal(fake.last.destroyCalls, 1)
  })

  const failures = [
    [WAState.UNPAIRED, 'logged_out', { reason: 'device_removed' }],
    [WAState.CONFLICT, 'disconnected', { reason: 'replaced', willReconnect: false }],
    [WAState.TOS_BLOCK, 'disconnected', { reason: 'banned', willReconnect: false }],
    [WAState.DEPRECATED_VERSION, 'disconnected', { reason: 'fatal', willReconnect: false }]
  ]
  for (const [reason, name, data] of failures) {
    it(`ends on ${reason} without a new client`, async () => {
      const { fake, events } = await readyEngine()
      fake.last.emit(Events.DISCONNECTED, reason)
      await settle()

      assert.deepEqual(events.at(-1), { name, data })
      assert.equal(fake.instances.length, 1)
    })
  }

  it('reports restore failure as logged_out', async () => {
    const { engine, fake, events } = buildEngine()
    await engine.start()
    fake.last.emit(Events.AUTHENTICATION_FAILURE, 'restore failed')

    assert.deepEqual(events.at(-1), { name: 'logged_out', data: { reason: 'restore_failed' } })
  })

  it('builds a new client after the browser dies', async () => {
    const { engine, fake, events } = await readyEngine()
    const first = fake.last
    first.pupBrowser.emit('disconnected')
    await waitFor(() => fake.instances.length === 2)

    assert.deepEqual(events.at(-1).data, { reason: 'network', willReconnect: true })
    assert.notEqual(fake.last, first)
    fake.last.becomeReady()
    assert.equal(engine.state, 'connected')
  })

  it('ignores events of a client it replaced', async () => {
    const { fake, events } = await readyEngine()
    const first = fake.last
    first.pupBrowser.emit('disconnected')
    await waitFor(() => fake.instances.length === 2)
    first.receive({
      id: inboundKey('5511900000001@c.us', 'OLD1'),
      body: 'late'
    })
    first.emit(Events.DISCONNECTED, WAState.UNPAIRED)
    await settle()

    assert.equal(events.some(event => event.name === 'message'), false)
    assert.equal(events.some(event => event.name === 'logged_out'), false)
  })

  it('retries a failed launch and then fails', async () => {
    const { engine, fake, events } = buildEngine({ failInitialize: true, config: { maxRetries: 2 } })
    await engine.start()
    await waitFor(() => engine.state === 'failed')

    const drops = events.filter(event => event.name === 'disconnected').map(event => event.data)
    assert.deepEqual(drops, [
      { reason: 'network', willReconnect: true },
      { reason: 'fatal', willReconnect: false }
    ])
    assert.equal(fake.instances.length, 3)
  })

  it('reports a network drop inside the page and the recovery', async () => {
    const { engine, fake, events } = await readyEngine()
    fake.last.emit(Events.STATE_CHANGED, WAState.TIMEOUT)
    fake.last.emit(Events.STATE_CHANGED, WAState.TIMEOUT)
    fake.last.emit(Events.STATE_CHANGED, WAState.CONNECTED)

    assert.deepEqual(events.map(event => event.name), ['connected', 'disconnected', 'connected'])
    assert.equal(engine.state, 'connected')
  })
})

describe('webjs stop and logout', () => {
  it('destroys the client and keeps the profile on stop', async () => {
    const { engine, fake, events } = await readyEngine()
    await engine.stop()

    assert.equal(fake.last.destroyCalls, 1)
    assert.equal(fake.last.loggedOut, undefined)
    assert.deepEqual(events.at(-1), { name: 'disconnected', data: { reason: 'stopped', willReconnect: false } })
    assert.equal(engine.state, 'stopped')
  })

  it('ignores the disconnect the library emits while stopping', async () => {
    const { engine, fake, events } = await readyEngine()
    const client = fake.last
    await engine.stop()
    client.emit(Events.DISCONNECTED, WAState.UNPAIRED)

    assert.equal(events.filter(event => event.name === 'logged_out').length, 0)
  })

  it('logs out through the client', async () => {
    const { engine, fake, events } = await readyEngine()
    await engine.logout()

    assert.equal(fake.last.loggedOut, true)
    assert.deepEqual(events.at(-1), { name: 'logged_out', data: { reason: 'requested' } })
    assert.equal(engine.state, 'logged_out')
  })

  it('starts a new client after a logout', async () => {
    const { engine, fake } = await readyEngine()
    await engine.logout()
    await engine.start()

    assert.equal(fake.instances.length, 2)
  })
})

describe('webjs send and lookup', () => {
  it('rejects sends before ready', async () => {
    const { engine } = buildEngine()
    await engine.start()

    await assert.rejects(engine.send({ to: CUSTOMER_JID, text: 'hi' }), { code: 'GW_ERR_CLIENT_NOT_READY' })
  })

  it('sends to the c.us chat without marking it seen', async () => {
    const { engine, fake } = await readyEngine()
    const result = await engine.send({ to: CUSTOMER_JID, text: 'hi' })

    assert.deepEqual(fake.last.sent, [
      { chatId: '5511900000001@c.us', content: 'hi', options: { sendSeen: false } }
    ])
    assert.equal(result.id, 'true_5511900000001@c.us_3EB0000000000000000001')
    assert.equal(result.toJid, CUSTOMER_JID)
  })

  it('fails when the library returns no message', async () => {
    const { engine, fake } = await readyEngine()
    fake.last.sendMessage = async () => undefined

    await assert.rejects(engine.send({ to: CUSTOMER_JID, text: 'hi' }), { code: 'GW_ERR_ENGINE_FAILED' })
  })

  it('drops the echo of its own send even when it comes first', async () => {
    const { engine, fake, events } = await readyEngine()
    const client = fake.last
    const original = client.sendMessage.bind(client)
    client.sendMessage = async (...args) => {
      const message = await original(...args)
      client.emit(Events.MESSAGE_CREATE, message)
      await settle()
      return message
    }
    await engine.send({ to: CUSTOMER_JID, text: 'hi' })
    await settle()

    assert.equal(events.some(event => event.name === 'message'), false)
  })

  it('emits the acks of its own send with the send id', async () => {
    const { engine, fake, events } = await readyEngine()
    const result = await engine.send({ to: CUSTOMER_JID, text: 'hi' })
    const message = new wweb.Message(fake.last, {
      id: { fromMe: true, remote: '5511900000001@c.us', id: '3EB0000000000000000001', _serialized: result.id },
      type: 'chat'
    })
    fake.last.emit(Events.MESSAGE_ACK, message, MessageAck.ACK_SERVER)
    fake.last.emit(Events.MESSAGE_ACK, message, MessageAck.ACK_DEVICE)
    fake.last.emit(Events.MESSAGE_ACK, message, MessageAck.ACK_READ)
    await waitFor(() => events.filter(event => event.name === 'ack').length === 3)

    const acks = events.filter(event => event.name === 'ack').map(event => event.data)
    assert.deepEqual(acks.map(ack => ack.status), ['sent', 'delivered', 'read'])
    assert.ok(acks.every(ack => ack.gateway_message_id === result.id))
  })

  it('returns the JID WhatsApp reports for a number', async () => {
    const { engine } = await readyEngine({ numbers: { 5511900000001: '551100000001@c.us' } })
    const result = await engine.lookup('+5511900000001')

    assert.deepEqual(result, { exists: true, jid: '551100000001@s.whatsapp.net' })
  })

  it('reports an unregistered number', async () => {
    const { engine } = await readyEngine()
    assert.deepEqual(await engine.lookup('5511900000002'), { exists: false, jid: null })
  })
})

describe('webjs inbound events', () => {
  it('reports a message typed on the phone', async () => {
    const { fake, events } = await readyEngine()
    fake.last.receive({
      id: {
        fromMe: true,
        remote: '5511900000001@c.us',
        id: '3A0000000000000001',
        _serialized: 'true_5511900000001@c.us_3A0000000000000001'
      },
      from: '5511900000009@c.us',
      to: '5511900000001@c.us',
      body: 'On my way'
    })
    await waitFor(() => events.some(event => event.name === 'message'))

    const message = events.find(event => event.name === 'message').data
    assert.equal(message.from_me, true)
    assert.equal(message.peer_phone, '+5511900000001')
    assert.equal(message.text, 'On my way')
  })

  it('drops a repeated message_create', async () => {
    const { fake, events } = await readyEngine()
    const data = {
      id: inboundKey('5511900000001@c.us', 'AC1'),
      from: '5511900000001@c.us',
      body: 'hi'
    }
    fake.last.receive(data)
    fake.last.receive(data)
    await settle()

    assert.equal(events.filter(event => event.name === 'message').length, 1)
  })

  it('drops status posts', async () => {
    const { fake, events } = await readyEngine()
    fake.last.receive({
      id: inboundKey('status@broadcast', 'ST1'),
      from: 'status@broadcast',
      author: '5511900000001@c.us',
      isStatusV3: true,
      body: 'Promo'
    })
    await settle()

    assert.equal(events.some(event => event.name === 'message'), false)
  })

  it('resolves the phone of a LID sender and reports the mapping', async () => {
    const { fake, events } = await readyEngine({
      lidPhones: { '100000000000002@lid': '5511900000001@c.us' }
    })
    fake.last.receive({
      id: inboundKey('100000000000002@lid', 'AC0001'),
      from: '100000000000002@lid',
      to: '5511900000009@c.us',
      body: 'Ok'
    })
    await waitFor(() => events.some(event => event.name === 'message'))

    const message = events.find(event => event.name === 'message').data
    assert.equal(message.sender_phone, '+5511900000001')
    assert.equal(message.sender_lid, '100000000000002@lid')
    assert.deepEqual(events.find(event => event.name === 'lid_mapped').data, {
      lid: '100000000000002@lid',
      phone: '+5511900000001',
      jid: CUSTOMER_JID
    })
  })

  it('looks a LID up once', async () => {
    const { fake } = await readyEngine({ lidPhones: { '100000000000002@lid': '5511900000001@c.us' } })
    for (const id of ['A1', 'A2']) {
      fake.last.receive({
        id: inboundKey('100000000000002@lid', id),
        from: '100000000000002@lid',
        body: 'Ok'
      })
    }
    await settle()

    assert.equal(fake.last.lidLookups, 1)
  })

  it('keeps an unresolved LID without phone', async () => {
    const { fake, events } = await readyEngine()
    fake.last.receive({
      id: inboundKey('100000000000003@lid', 'AC2'),
      from: '100000000000003@lid',
      body: 'Oi'
    })
    await waitFor(() => events.some(event => event.name === 'message'))

    const message = events.find(event => event.name === 'message').data
    assert.equal(message.sender_phone, null)
    assert.equal(message.sender_lid, '100000000000003@lid')
  })

  it('ignores acks on inbound messages', async () => {
    const { fake, events } = await readyEngine()
    const inbound = fake.last.receive({
      id: inboundKey('5511900000001@c.us', 'IN1'),
      ack: -1
    })
    fake.last.emit(Events.MESSAGE_ACK, inbound, MessageAck.ACK_ERROR)
    await settle()

    assert.equal(events.some(event => event.name === 'ack'), false)
  })

  it('emits edits, revokes and reactions', async () => {
    const { fake, events } = await readyEngine()
    const original = new wweb.Message(fake.last, {
      id: inboundKey('5511900000001@c.us', 'MSG_A'),
      type: 'chat',
      body: 'corrected text'
    })
    fake.last.emit(Events.MESSAGE_EDIT, original, 'corrected text', 'typo text')
    fake.last.emit(Events.MESSAGE_REVOKED_EVERYONE, original, undefined)
    fake.last.emit(Events.MESSAGE_REACTION, {
      msgId: inboundKey('5511900000001@c.us', 'MSG_A'),
      senderId: '5511900000001@c.us',
      reaction: '👍'
    })
    await waitFor(() => events.length === 4)

    assert.deepEqual(events.slice(1).map(event => event.name), ['message_update', 'message_update', 'reaction'])
    assert.deepEqual(events.slice(1).map(event => event.data.gateway_message_id), [
      'false_5511900000001@c.us_MSG_A',
      'false_5511900000001@c.us_MSG_A',
      'false_5511900000001@c.us_MSG_A'
    ])
  })

  it('maps a message that failed to decrypt', async () => {
    const { fake, events } = await readyEngine()
    const message = new wweb.Message(fake.last, {
      id: inboundKey('5511900000001@c.us', 'CT1'),
      type: 'ciphertext',
      t: 1719000000
    })
    fake.last.emit(Events.MESSAGE_CIPHERTEXT_FAILED, message)
    await waitFor(() => events.some(event => event.name === 'message'))

    assert.equal(events.find(event => event.name === 'message').data.kind, 'undecryptable')
  })

  it('never logs message text', async () => {
    const { fake, lines } = await readyEngine()
    fake.last.receive({
      id: inboundKey('120363000000000001@newsletter', 'NL1'),
      body: 'private words'
    })
    await settle()

    assert.equal(JSON.stringify(lines).includes('private words'), false)
  })
})
