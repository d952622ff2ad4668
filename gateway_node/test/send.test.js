import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'

import { createEngine as createSimEngine } from '../src/engines/sim.js'
import { buildTestApp, logSink, makeDataDir, post, startFakeDjango, waitFor } from './helpers.js'

const CUSTOMER = '+5511900000001'

// The sim engine, with every send() and lookup() counted.
function countingEngines () {
  const counts = { sends: 0, lookups: 0 }
  const factory = (options) => {
    const engine = createSimEngine(options)
    const send = engine.send.bind(engine)
    const lookup = engine.lookup.bind(engine)
    engine.send = async (request) => {
      counts.sends += 1
      // Slow enough that concurrent requests overlap.
      await new Promise((resolve) => setTimeout(resolve, 20))
      return send(request)
    }
    engine.lookup = async (digits) => {
      counts.lookups += 1
      return lookup(digits)
    }
    return engine
  }
  return { counts, factory }
}

async function pair (app, userId = 1) {
  await post(app, '/start', { user_id: userId })
  await post(app, '/sim/scan', { user_id: userId, phone: '+5511900000009' })
}

function sendBody (overrides = {}) {
  return { user_id: 1, message_id: 'django-1', to: CUSTOMER, text: 'Hello', ...overrides }
}

describe('POST /send', () => {
  it('answers 409 before the session is connected', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    const response = await post(app, '/send', sendBody())
    assert.equal(response.statusCode, 409)
    assert.equal(response.json().code, 'GW_ERR_CLIENT_NOT_READY')
  })

  it('answers 404 for a user without a session', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send', sendBody())
    assert.equal(response.statusCode, 404)
    assert.equal(response.json().code, 'GW_ERR_SESSION_NOT_FOUND')
  })

  it('lets a send fail with 409 be retried once connected', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    assert.equal((await post(app, '/send', sendBody())).statusCode, 409)
    await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })
    assert.equal((await post(app, '/send', sendBody())).statusCode, 202)
  })

  it('answers 400 for a recipient that is not a number or JID', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)
    for (const to of ['+55 11 9OOOO-0001', '120363000000000002@g.us', 'status@broadcast', '1234567890123456']) {
      const response = await post(app, '/send', sendBody({ to }))
      assert.equal(response.statusCode, 400, to)
      assert.equal(response.json().code, 'GW_ERR_INVALID_RECIPIENT')
      assert.ok(response.json().message.includes(JSON.stringify(to)), response.json().message)
    }
  })

  it('accepts typed numbers with spaces, dashes and 00', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)
    for (const [index, to] of [' +55 (11) 90000-0001 ', '0055 11 90000 0001', '+5511900000001@s.whatsapp.net'].entries()) {
      const response = await post(app, '/send', sendBody({ message_id: `m${index}`, to }))
      assert.equal(response.statusCode, 202, to)
      assert.equal(response.json().to_jid, '5511900000001@s.whatsapp.net')
    }
  })

  it('answers 422 for a number without WhatsApp', async (t) => {
    const app = await buildTestApp(t, { env: { WA_SIM_UNREGISTERED: '5511900000077' } })
    await pair(app)
    const response = await post(app, '/send', sendBody({ to: '+5511900000077' }))
    assert.equal(response.statusCode, 422)
    assert.equal(response.json().code, 'GW_ERR_NOT_ON_WHATSAPP')
    assert.match(response.json().message, /\+5511900000077/)
  })

  it('looks up phone numbers but not JIDs', async (t) => {
    const { counts, factory } = countingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)
    await post(app, '/send', sendBody({ message_id: 'a', to: CUSTOMER }))
    await post(app, '/send', sendBody({ message_id: 'b', to: '551100000001@s.whatsapp.net' }))
    assert.equal(counts.lookups, 1)
    assert.equal(counts.sends, 2)
  })

  it('sends to the JID the lookup returned', async (t) => {
    const factory = (options) => {
      const engine = createSimEngine(options)
      // WhatsApp registered this Brazilian account without the ninth digit.
      engine.lookup = async () => ({ exists: true, jid: '551100000001@s.whatsapp.net' })
      return engine
    }
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)
    const response = await post(app, '/send', sendBody({ to: CUSTOMER }))
    assert.equal(response.json().to_jid, '551100000001@s.whatsapp.net')
  })

  it('returns the first answer for a repeated message_id and sends once', async (t) => {
    const { counts, factory } = countingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    const first = await post(app, '/send', sendBody())
    const second = await post(app, '/send', sendBody())
    assert.equal(second.statusCode, 202)
    assert.deepEqual(second.json(), first.json())
    assert.equal(counts.sends, 1)
  })

  it('sends once for two concurrent identical requests', async (t) => {
    const { counts, factory } = countingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    const [first, second] = await Promise.all([post(app, '/send', sendBody()), post(app, '/send', sendBody())])
    assert.equal(first.statusCode, 202)
    assert.equal(second.statusCode, 202)
    assert.deepEqual(first.json(), second.json())
    assert.equal(counts.sends, 1)
  })

  it('keeps message_ids apart per user', async (t) => {
    const app = await buildTestApp(t)
    await pair(app, 1)
    await pair(app, 2)
    const first = await post(app, '/send', sendBody({ user_id: 1 }))
    const second = await post(app, '/send', sendBody({ user_id: 2 }))
    assert.equal(second.statusCode, 202)
    assert.notEqual(second.json().gateway_message_id, first.json().gateway_message_id)
  })

  it('answers 409 when a message_id comes back with another text', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)
    await post(app, '/send', sendBody())
    const response = await post(app, '/send', sendBody({ text: 'Something else' }))
    assert.equal(response.statusCode, 409)
    assert.equal(response.json().code, 'GW_ERR_IDEMPOTENCY_CONFLICT')
  })

  it('returns the first answer after a restart on the same data dir', async (t) => {
    const dataDir = await makeDataDir(t)
    const { counts, factory } = countingEngines()
    const first = await buildTestApp(t, { dataDir, engineFactory: factory })
    await pair(first)
    const answer = (await post(first, '/send', sendBody())).json()
    await first.close()

    const second = await buildTestApp(t, { dataDir, engineFactory: factory })
    await second.gateway.sessions.restoreAll()
    const repeat = await post(second, '/send', sendBody())
    assert.equal(repeat.statusCode, 202)
    assert.deepEqual(repeat.json(), answer)
    assert.equal(counts.sends, 1)
  })

  it('answers 409 GW_ERR_SEND_IN_DOUBT for a send cut off by a crash', async (t) => {
    const dataDir = await makeDataDir(t)
    const first = await buildTestApp(t, { dataDir })
    await pair(first)
    // A claim left `sending` is what a crash in the middle of a send leaves.
    const hash = createHash('sha256').update('5511900000001@s.whatsapp.net\nHello').digest('hex')
    first.gateway.sends.begin(1, 'django-1', hash)
    await first.close()

    const second = await buildTestApp(t, { dataDir })
    await second.gateway.sessions.restoreAll()
    const response = await post(second, '/send', sendBody())
    assert.equal(response.statusCode, 409)
    assert.equal(response.json().code, 'GW_ERR_SEND_IN_DOUBT')
  })

  it('answers 504 when the engine does not confirm in time, then reports the send in doubt', async (t) => {
    const factory = (options) => {
      const engine = createSimEngine(options)
      engine.send = () => new Promise(() => {})
      return engine
    }
    const app = await buildTestApp(t, { engineFactory: factory, env: { WA_SEND_TIMEOUT_MS: '100' } })
    await pair(app)
    const response = await post(app, '/send', sendBody())
    assert.equal(response.statusCode, 504)
    assert.equal(response.json().code, 'GW_ERR_SEND_TIMEOUT')

    const repeat = await post(app, '/send', sendBody())
    assert.equal(repeat.statusCode, 409)
    assert.equal(repeat.json().code, 'GW_ERR_SEND_IN_DOUBT')
  })

  it('counts sends and failures in /metrics', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)
    await post(app, '/send', sendBody())
    await post(app, '/send', sendBody({ message_id: 'x', to: 'nope' }))
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
    assert.match(metrics, /wa_gateway_sends_total 1/)
    assert.match(metrics, /wa_gateway_send_failures_total\{code="GW_ERR_INVALID_RECIPIENT"\} 1/)
  })
})

describe('echoes and acks', () => {
  it('acks carry Django\'s message_id after a restart', async (t) => {
    const dataDir = await makeDataDir(t)
    const django = await startFakeDjango(t)
    const env = { WA_CALLBACK_URL: django.url, WA_SIM_ACK_DELAYS_MS: '0,0,400' }
    const first = await buildTestApp(t, { dataDir, env })
    await pair(first)
    const gatewayId = (await post(first, '/send', sendBody())).json().gateway_message_id
    await first.close()

    // A real engine replays acks after a reconnect. Emit one by hand.
    const second = await buildTestApp(t, { dataDir, env })
    await second.gateway.sessions.restoreAll()
    const engine = second.gateway.sessions.liveEngine(1)
    engine.emit('ack', { gateway_message_id: gatewayId, chat_jid: '5511900000001@s.whatsapp.net', status: 'read', error: null, timestamp: null })

    const read = await waitFor(() => django.eventsOf(1).find((event) => event.type === 'message.status' && event.data.status === 'read'))
    assert.equal(read.data.message_id, 'django-1')
  })

  it('drops a replayed echo after a restart', async (t) => {
    const dataDir = await makeDataDir(t)
    const django = await startFakeDjango(t)
    const env = { WA_CALLBACK_URL: django.url }
    const first = await buildTestApp(t, { dataDir, env })
    await pair(first)
    const gatewayId = (await post(first, '/send', sendBody())).json().gateway_message_id
    await first.close()

    const second = await buildTestApp(t, { dataDir, env })
    await second.gateway.sessions.restoreAll()
    await post(second, '/sim/inbound', { user_id: 1, from: CUSTOMER, text: 'Hello', from_me: true, id: gatewayId })
    await post(second, '/sim/inbound', { user_id: 1, from: CUSTOMER, text: 'typed on the phone', from_me: true, id: '3A0000000000000002' })

    await waitFor(() => django.typesOf(1).includes('message.received'))
    const received = django.eventsOf(1).filter((event) => event.type === 'message.received')
    assert.deepEqual(received.map((event) => event.data.gateway_message_id), ['3A0000000000000002'])
  })

  it('reports acks of phone-typed messages with a null message_id', async (t) => {
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, { env: { WA_CALLBACK_URL: django.url } })
    await pair(app)
    app.gateway.sessions.liveEngine(1).emit('ack', {
      gateway_message_id: '3A0000000000000003', chat_jid: '5511900000001@s.whatsapp.net', status: 'delivered', error: null, timestamp: null
    })
    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'message.status'))
    assert.equal(event.data.message_id, null)
  })
})

describe('rejected recipients in the log', () => {
  it('keeps only the last two digits of the number', async (t) => {
    const sink = logSink()
    const app = await buildTestApp(t, { logSink: sink })
    await pair(app)

    const response = await post(app, '/send', sendBody({ to: '07911 000555x' }))

    assert.equal(response.statusCode, 400)
    const line = sink.lines.find((entry) => entry.msg === 'request rejected')
    assert.ok(line, sink.text())
    assert.ok(!line.reason.includes('7911 000'), line.reason)
    assert.ok(line.reason.includes('*55'), line.reason)
  })

  it('masks the number of a rejected batch item', async (t) => {
    const sink = logSink()
    const app = await buildTestApp(t, { logSink: sink })
    await pair(app)

    await post(app, '/send/batch', { user_id: 1, messages: [{ message_id: 'b1', to: '1234567890123456', text: 'Hi' }] })

    const line = sink.lines.find((entry) => entry.msg === 'batch item rejected')
    assert.ok(line, sink.text())
    assert.ok(!line.reason.includes('12345678'), line.reason)
    assert.ok(line.reason.includes('**************56'), line.reason)
  })
})
