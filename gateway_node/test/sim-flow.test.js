import assert from 'node:assert/strict'
import { access } from 'node:fs/promises'
import { describe, it } from 'node:test'

import { buildTestApp, get, logSink, post, startFakeDjango, statusTimes, waitFor } from './helpers.js'

const OWN_PHONE = '+5511900000009'
const CUSTOMER = '+5511900000001'

async function exists (path) {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

// Returns the message.status events of user 1 once the last one reports
// `read`, and false before. Receipts that wait in the outbox together arrive
// folded into one event, so there are one to three events.
function readReceipts (django) {
  const found = django.eventsOf(1).filter((event) => event.type === 'message.status')
  return found.at(-1)?.data.status === 'read' && found
}

async function connectedApp (t, { env = {}, ...options } = {}) {
  const django = await startFakeDjango(t)
  const app = await buildTestApp(t, { env: { WA_CALLBACK_URL: django.url, ...env }, ...options })
  await post(app, '/start', { user_id: 1 })
  await post(app, '/sim/scan', { user_id: 1, phone: OWN_PHONE })
  await waitFor(() => django.typesOf(1).includes('session.connected'), { message: 'session.connected' })
  return { app, django }
}

describe('sim end to end over HTTP', () => {
  it('reports the QR, then the connection', async (t) => {
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, { env: { WA_CALLBACK_URL: django.url } })

    await post(app, '/start', { user_id: 1 })
    const qrEvent = await waitFor(() => django.eventsOf(1).find((event) => event.type === 'session.qr'))
    assert.match(qrEvent.data.qr, /^2@[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]{44},[A-Za-z0-9+/=]{44},[A-Za-z0-9+/=]{44}$/)
    assert.ok(Date.parse(qrEvent.data.expires_at) > Date.now())
    assert.equal((await get(app, '/qr?user_id=1')).json().qr, qrEvent.data.qr)

    const scan = await post(app, '/sim/scan', { user_id: 1, phone: OWN_PHONE })
    assert.deepEqual(scan.json(), { user_id: 1, state: 'connected' })

    const connected = await waitFor(() => django.eventsOf(1).find((event) => event.type === 'session.connected'))
    assert.equal(connected.data.jid, '5511900000009@s.whatsapp.net')
    assert.equal(connected.data.phone, OWN_PHONE)
    assert.match(connected.data.lid, /^1\d{14}@lid$/)
    assert.deepEqual(django.typesOf(1), ['session.qr', 'session.connected'])
  })

  it('stamps every event with id, seq, user and time', async (t) => {
    const { django } = await connectedApp(t)
    const [first, second] = django.eventsOf(1)
    assert.match(first.event_id, /^[0-9a-f-]{36}$/)
    assert.notEqual(first.event_id, second.event_id)
    assert.ok(second.seq > first.seq)
    assert.equal(first.user_id, 1)
    assert.match(first.occurred_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  })

  it('sends and reports sent, delivered and read with message_id', async (t) => {
    const { app, django } = await connectedApp(t)

    const send = await post(app, '/send', { user_id: 1, message_id: 'django-1', to: CUSTOMER, text: 'Hello there' })
    assert.equal(send.statusCode, 202)
    const { gateway_message_id: gatewayId, to_jid: toJid } = send.json()
    assert.match(gatewayId, /^3EB0[0-9A-F]{18}$/)
    assert.equal(toJid, '5511900000001@s.whatsapp.net')

    const statuses = await waitFor(() => readReceipts(django), { message: 'the read receipt' })
    const times = statusTimes(statuses)
    assert.deepEqual(Object.keys(times), ['sent', 'delivered', 'read'])
    for (const time of Object.values(times)) {
      assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    }
    assert.ok(times.sent <= times.delivered, 'delivered after sent')
    assert.ok(times.delivered <= times.read, 'read after delivered')
    for (const event of statuses) {
      assert.equal(event.data.gateway_message_id, gatewayId)
      assert.equal(event.data.message_id, 'django-1')
      assert.equal(event.data.chat_jid, toJid)
    }
  })

  it('drops the echo of its own send', async (t) => {
    const { app, django } = await connectedApp(t)
    await post(app, '/send', { user_id: 1, message_id: 'django-1', to: CUSTOMER, text: 'Hello there' })
    await waitFor(() => readReceipts(django), { message: 'the read receipt' })
    assert.equal(django.typesOf(1).includes('message.received'), false)
  })

  it('reports an inbound message from a phone number', async (t) => {
    const { app, django } = await connectedApp(t)
    const inbound = await post(app, '/sim/inbound', { user_id: 1, from: CUSTOMER, text: 'Oi', push_name: 'Customer A' })
    assert.equal(inbound.statusCode, 202)

    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'message.received'))
    assert.equal(event.data.gateway_message_id, inbound.json().gateway_message_id)
    assert.equal(event.data.text, 'Oi')
    assert.equal(event.data.chat_jid, '5511900000001@s.whatsapp.net')
    assert.equal(event.data.chat_type, 'direct')
    assert.equal(event.data.sender_phone, CUSTOMER)
    assert.equal(event.data.peer_phone, CUSTOMER)
    assert.equal(event.data.push_name, 'Customer A')
    assert.equal(event.data.from_me, false)
    assert.equal(event.data.kind, 'text')
  })

  it('reports a LID-only sender without a phone', async (t) => {
    const { app, django } = await connectedApp(t)
    await post(app, '/sim/inbound', { user_id: 1, from: '100000000000001@lid', text: 'Oi' })

    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'message.received'))
    assert.equal(event.data.sender_jid, '100000000000001@lid')
    assert.equal(event.data.sender_phone, null)
    assert.equal(event.data.sender_lid, '100000000000001@lid')
    assert.equal(event.data.peer_phone, null)
    assert.equal(event.data.peer_lid, '100000000000001@lid')
  })

  it('maps a LID to its phone number before the message', async (t) => {
    const { app, django } = await connectedApp(t)
    await post(app, '/sim/inbound', { user_id: 1, from: CUSTOMER, from_lid: '100000000000002:38@lid', text: 'Ok' })

    await waitFor(() => django.typesOf(1).includes('message.received'))
    const types = django.typesOf(1)
    assert.ok(types.indexOf('contact.lid_mapped') < types.indexOf('message.received'))
    const mapped = django.eventsOf(1).find((item) => item.type === 'contact.lid_mapped')
    assert.deepEqual(mapped.data, { lid: '100000000000002@lid', phone: CUSTOMER, jid: '5511900000001@s.whatsapp.net' })

    const message = django.eventsOf(1).find((item) => item.type === 'message.received')
    assert.equal(message.data.chat_jid, '100000000000002@lid')
    assert.equal(message.data.peer_phone, CUSTOMER)
    assert.equal(message.data.peer_lid, '100000000000002@lid')
  })

  it('reports a message typed on the phone as from_me with the customer as peer', async (t) => {
    const { app, django } = await connectedApp(t)
    await post(app, '/sim/inbound', { user_id: 1, from: CUSTOMER, text: 'On my way', from_me: true, id: '3A0000000000000001' })

    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'message.received'))
    assert.equal(event.data.gateway_message_id, '3A0000000000000001')
    assert.equal(event.data.from_me, true)
    assert.equal(event.data.sender_phone, OWN_PHONE)
    assert.equal(event.data.peer_jid, '5511900000001@s.whatsapp.net')
    assert.equal(event.data.peer_phone, CUSTOMER)
  })

  it('logout wipes only that user\'s auth', async (t) => {
    const { app, django } = await connectedApp(t)
    await post(app, '/start', { user_id: 2 })
    await post(app, '/sim/scan', { user_id: 2, phone: '+5511900000008' })
    const { authStore } = app.gateway
    assert.equal(await authStore.has(1), true)
    assert.equal(await authStore.has(2), true)

    const logout = await post(app, '/logout', { user_id: 1 })
    assert.deepEqual(logout.json(), { user_id: 1, state: 'logged_out' })
    assert.equal(await authStore.has(1), false)
    assert.equal(await exists(authStore.userDir(1)), false)
    assert.equal(await authStore.has(2), true)
    assert.equal((await get(app, '/status?user_id=2')).json().state, 'connected')

    const loggedOut = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'session.logged_out'))
    assert.deepEqual(loggedOut.data, { reason: 'requested' })
  })

  it('offers a new QR after logout', async (t) => {
    const { app } = await connectedApp(t)
    await post(app, '/logout', { user_id: 1 })
    const start = await post(app, '/start', { user_id: 1 })
    assert.equal(start.json().state, 'qr_pending')
    assert.equal((await get(app, '/qr?user_id=1')).statusCode, 200)
  })

  it('never logs the text of a message', async (t) => {
    const sink = logSink()
    const { app, django } = await connectedApp(t, { logSink: sink })
    const secretText = 'unique-text-that-must-not-be-logged'
    await post(app, '/send', { user_id: 1, message_id: 'django-9', to: CUSTOMER, text: secretText })
    await post(app, '/sim/inbound', { user_id: 1, from: CUSTOMER, text: secretText })
    await waitFor(() => django.typesOf(1).includes('message.received'))
    assert.ok(sink.lines.length > 5)
    assert.equal(sink.text().includes(secretText), false)
  })
})

describe('sim disconnects', () => {
  it('network drop reports disconnected, then reconnects by itself', async (t) => {
    const { app, django } = await connectedApp(t)
    const response = await post(app, '/sim/disconnect', { user_id: 1, reason: 'network' })
    assert.equal(response.json().state, 'disconnected')

    await waitFor(() => django.typesOf(1).filter((type) => type === 'session.connected').length === 2, { message: 'reconnect' })
    const drop = django.eventsOf(1).find((event) => event.type === 'session.disconnected')
    assert.deepEqual(drop.data, { reason: 'network', will_reconnect: true })
    assert.equal((await get(app, '/status?user_id=1')).json().state, 'connected')
  })

  it('restart reconnects without a disconnected event', async (t) => {
    const { app, django } = await connectedApp(t)
    await post(app, '/sim/disconnect', { user_id: 1, reason: 'restart' })
    await waitFor(() => django.typesOf(1).filter((type) => type === 'session.connected').length === 2)
    assert.equal(django.typesOf(1).includes('session.disconnected'), false)
  })

  for (const reason of ['replaced', 'banned', 'fatal']) {
    it(`${reason} ends in failed and frees the client`, async (t) => {
      const { app, django } = await connectedApp(t)
      const response = await post(app, '/sim/disconnect', { user_id: 1, reason })
      assert.equal(response.json().state, 'failed')
      assert.equal(app.gateway.sessions.liveCount(), 0)
      const drop = await waitFor(() => django.eventsOf(1).find((event) => event.type === 'session.disconnected'))
      assert.deepEqual(drop.data, { reason, will_reconnect: false })
      assert.equal(await app.gateway.authStore.has(1), true)
    })
  }

  it('logged_out from the phone wipes the auth', async (t) => {
    const { app, django } = await connectedApp(t)
    const response = await post(app, '/sim/disconnect', { user_id: 1, reason: 'logged_out' })
    assert.equal(response.json().state, 'logged_out')
    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'session.logged_out'))
    assert.deepEqual(event.data, { reason: 'device_removed' })
    await waitFor(async () => !(await app.gateway.authStore.has(1)), { message: 'auth wiped' })
  })

  it('acks held during a network drop arrive after the reconnect', async (t) => {
    const { app, django } = await connectedApp(t, { env: { WA_SIM_ACK_DELAYS_MS: '0,150,300' } })
    await post(app, '/send', { user_id: 1, message_id: 'django-1', to: CUSTOMER, text: 'hi' })
    await waitFor(() => django.typesOf(1).includes('message.status'))
    await post(app, '/sim/disconnect', { user_id: 1, reason: 'network' })

    const statuses = await waitFor(() => readReceipts(django), { message: 'the read receipt' })
    assert.deepEqual(Object.keys(statusTimes(statuses)), ['sent', 'delivered', 'read'])
    const types = django.typesOf(1)
    assert.ok(types.lastIndexOf('session.connected') < types.lastIndexOf('message.status'))
  })
})

describe('QR expiry', () => {
  it('rotates the QR and ends with qr_timeout', async (t) => {
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, {
      env: { WA_CALLBACK_URL: django.url, WA_SIM_QR_TTL_MS: '60,30', WA_SIM_QR_MAX: '3' }
    })
    await post(app, '/start', { user_id: 1 })

    await waitFor(() => django.typesOf(1).includes('session.disconnected'), { message: 'qr_timeout' })
    const types = django.typesOf(1)
    assert.deepEqual(types, ['session.qr', 'session.qr', 'session.qr', 'session.disconnected'])
    const qrs = django.eventsOf(1).filter((event) => event.type === 'session.qr').map((event) => event.data.qr)
    assert.equal(new Set(qrs).size, 3)
    // Only the ref changes between rotations; the keys stay.
    assert.equal(new Set(qrs.map((qr) => qr.split(',').slice(1).join(','))).size, 1)
    assert.deepEqual(django.eventsOf(1).at(-1).data, { reason: 'qr_timeout', will_reconnect: false })

    assert.equal((await get(app, '/status?user_id=1')).json().state, 'qr_expired')
    assert.equal(app.gateway.sessions.liveCount(), 0)
    assert.equal((await get(app, '/qr?user_id=1')).statusCode, 404)
  })

  it('starts again with a new QR after qr_expired', async (t) => {
    const app = await buildTestApp(t, { env: { WA_SIM_QR_TTL_MS: '20,20', WA_SIM_QR_MAX: '1' } })
    await post(app, '/start', { user_id: 1 })
    await waitFor(async () => (await get(app, '/status?user_id=1')).json().state === 'qr_expired')
    assert.equal((await post(app, '/start', { user_id: 1 })).json().state, 'qr_pending')
  })
})
