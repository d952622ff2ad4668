import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'

import { BODY_LIMIT_BYTES } from '../src/app.js'
import { createEngine as createSimEngine } from '../src/engines/sim.js'
import { MAX_SEND_BATCH, SEND_BATCH_BODY_LIMIT_BYTES } from '../src/routes/messages.js'
import { MAX_TEXT_LENGTH } from '../src/routes/schemas.js'
import { EMOJI, asciiJson, buildTestApp, post, signature } from './helpers.js'

const CUSTOMER = '+5511900000001'
const UNREGISTERED = '+5511900000077'

// The sim engine, with every send() recorded in call order and the highest
// number of sends running at once.
function recordingEngines ({ delayMs = 0 } = {}) {
  const record = { sends: [], running: 0, maxRunning: 0 }
  const factory = (options) => {
    const engine = createSimEngine(options)
    const send = engine.send.bind(engine)
    engine.send = async (request) => {
      record.sends.push(request)
      record.running += 1
      record.maxRunning = Math.max(record.maxRunning, record.running)
      try {
        await new Promise((resolve) => setTimeout(resolve, delayMs))
        return await send(request)
      } finally {
        record.running -= 1
      }
    }
    return engine
  }
  return { record, factory }
}

async function pair (app, userId = 1) {
  await post(app, '/start', { user_id: userId })
  await post(app, '/sim/scan', { user_id: userId, phone: '+5511900000009' })
}

function item (messageId, overrides = {}) {
  return { message_id: messageId, to: CUSTOMER, text: `text of ${messageId}`, ...overrides }
}

function batchBody (messages, userId = 1) {
  return { user_id: userId, messages }
}

// Engines that record each text sent and whose sends, for the users that
// `hangs` picks, wait until `release()` or the end of the test.
function hangingEngines (t, hangs = () => true) {
  const sends = []
  let release
  const hung = new Promise((resolve) => { release = resolve })
  t.after(() => release())
  const factory = (options) => {
    const engine = createSimEngine(options)
    const send = engine.send.bind(engine)
    engine.send = async (request) => {
      sends.push(request.text)
      if (hangs(options.userId)) await hung
      return send(request)
    }
    return engine
  }
  return { factory, release, sends }
}

function items (count) {
  return Array.from({ length: count }, (_, index) => item(`m${index + 1}`))
}

describe('POST /send/batch', () => {
  it('sends all items in order', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    const response = await post(app, '/send/batch', batchBody(items(3)))
    assert.equal(response.statusCode, 200)
    const { results } = response.json()
    assert.deepEqual(results.map((result) => result.message_id), ['m1', 'm2', 'm3'])
    assert.deepEqual(record.sends.map((request) => request.text), ['text of m1', 'text of m2', 'text of m3'])
    for (const result of results) {
      assert.deepEqual(Object.keys(result), ['message_id', 'gateway_message_id', 'to_jid'])
      assert.equal(result.to_jid, '5511900000001@s.whatsapp.net')
      const row = app.gateway.sends.find(1, result.message_id)
      assert.equal(row.state, 'sent')
      assert.equal(row.gateway_message_id, result.gateway_message_id)
    }
  })

  it('sends one item at a time', async (t) => {
    const { record, factory } = recordingEngines({ delayMs: 20 })
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    await post(app, '/send/batch', batchBody(items(3)))
    assert.equal(record.sends.length, 3)
    assert.equal(record.maxRunning, 1)
  })

  it('repeated batch returns first results', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    const first = await post(app, '/send/batch', batchBody(items(3)))
    const second = await post(app, '/send/batch', batchBody(items(3)))
    assert.equal(second.statusCode, 200)
    assert.deepEqual(second.json(), first.json())
    assert.equal(record.sends.length, 3)
  })

  it('returns an earlier /send result', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)

    const single = await post(app, '/send', { user_id: 1, ...item('m2') })
    const response = await post(app, '/send/batch', batchBody(items(3)))
    assert.deepEqual(response.json().results[1], { message_id: 'm2', ...single.json() })
  })

  it('fails only the conflicting item', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)
    await post(app, '/send', { user_id: 1, ...item('m2') })

    const messages = [item('m1'), item('m2', { text: 'Something else' }), item('m3')]
    const response = await post(app, '/send/batch', batchBody(messages))
    assert.equal(response.statusCode, 200)
    const [first, conflict, third] = response.json().results
    assert.equal(conflict.error.status, 409)
    assert.equal(conflict.error.code, 'GW_ERR_IDEMPOTENCY_CONFLICT')
    assert.ok(first.gateway_message_id)
    assert.ok(third.gateway_message_id)
    assert.deepEqual(record.sends.map((request) => request.text), ['text of m2', 'text of m1', 'text of m3'])
  })

  it('fails only the number without WhatsApp', async (t) => {
    const app = await buildTestApp(t, { env: { WA_SIM_UNREGISTERED: UNREGISTERED.slice(1) } })
    await pair(app)

    const messages = [item('m1'), item('m2', { to: UNREGISTERED }), item('m3')]
    const [first, failed, third] = (await post(app, '/send/batch', batchBody(messages))).json().results
    assert.equal(failed.error.status, 422)
    assert.equal(failed.error.code, 'GW_ERR_NOT_ON_WHATSAPP')
    assert.match(failed.error.message, /\+5511900000077/)
    assert.ok(first.gateway_message_id)
    assert.ok(third.gateway_message_id)
  })

  it('fails only the invalid recipient', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)

    const messages = [item('m1'), item('m2', { to: 'status@broadcast' }), item('m3')]
    const [first, failed, third] = (await post(app, '/send/batch', batchBody(messages))).json().results
    assert.equal(failed.error.status, 400)
    assert.equal(failed.error.code, 'GW_ERR_INVALID_RECIPIENT')
    assert.ok(first.gateway_message_id)
    assert.ok(third.gateway_message_id)
  })

  it('keeps sending after an item times out', async (t) => {
    const factory = (options) => {
      const engine = createSimEngine(options)
      const send = engine.send.bind(engine)
      engine.send = (request) => (request.text === 'text of m1' ? new Promise(() => {}) : send(request))
      return engine
    }
    const app = await buildTestApp(t, { engineFactory: factory, env: { WA_SEND_TIMEOUT_MS: '100' } })
    await pair(app)

    const [timedOut, second] = (await post(app, '/send/batch', batchBody(items(2)))).json().results
    assert.equal(timedOut.error.status, 504)
    assert.equal(timedOut.error.code, 'GW_ERR_SEND_TIMEOUT')
    assert.ok(second.gateway_message_id)
  })

  it('fails every item before connecting', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })

    const response = await post(app, '/send/batch', batchBody(items(2)))
    assert.equal(response.statusCode, 200)
    assert.equal(response.json().results.length, 2)
    for (const result of response.json().results) {
      assert.equal(result.error.status, 409)
      assert.equal(result.error.code, 'GW_ERR_CLIENT_NOT_READY')
    }
  })

  it('item errors equal /send errors', async (t) => {
    const app = await buildTestApp(t, { env: { WA_SIM_UNREGISTERED: UNREGISTERED.slice(1) } })
    await pair(app)
    await post(app, '/send', { user_id: 1, ...item('taken') })
    // A claim left `sending`, as a crash in the middle of a send leaves it.
    const hash = createHash('sha256').update('5511900000001@s.whatsapp.net\ntext of in-doubt').digest('hex')
    app.gateway.sends.begin(1, 'in-doubt', hash)

    const messages = [
      item('taken', { text: 'Something else' }),
      item('in-doubt'),
      item('unregistered', { to: UNREGISTERED }),
      item('invalid', { to: 'nope' })
    ]
    const { results } = (await post(app, '/send/batch', batchBody(messages))).json()
    for (const [index, message] of messages.entries()) {
      const single = await post(app, '/send', { user_id: 1, ...message })
      assert.deepEqual(results[index].error, { status: single.statusCode, ...single.json() }, message.message_id)
    }
    assert.deepEqual(results.map((result) => result.error.code), [
      'GW_ERR_IDEMPOTENCY_CONFLICT', 'GW_ERR_SEND_IN_DOUBT', 'GW_ERR_NOT_ON_WHATSAPP', 'GW_ERR_INVALID_RECIPIENT'
    ])
  })

  it('maps an unexpected error like /send', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)
    app.gateway.sessions.liveEngine = () => {
      throw new Error('an internal detail')
    }

    const [result] = (await post(app, '/send/batch', batchBody(items(1)))).json().results
    const single = await post(app, '/send', { user_id: 1, ...item('m1') })
    assert.deepEqual(result.error, { status: 500, code: 'GW_ERR_INTERNAL', message: 'Internal Server Error' })
    assert.deepEqual(result.error, { status: single.statusCode, ...single.json() })
  })

  it('sends items of several users in one batch', async (t) => {
    const app = await buildTestApp(t)
    await pair(app, 1)
    await pair(app, 2)

    const messages = [item('m1', { user_id: 1 }), item('m2', { user_id: 2 })]
    const response = await post(app, '/send/batch', { messages })
    assert.equal(response.statusCode, 200, response.body)
    const [first, second] = response.json().results
    assert.equal(app.gateway.sends.find(1, 'm1').gateway_message_id, first.gateway_message_id)
    assert.equal(app.gateway.sends.find(2, 'm2').gateway_message_id, second.gateway_message_id)
    assert.equal(app.gateway.sends.find(1, 'm2'), undefined)
  })

  it('sends an item without user_id as the body user_id', async (t) => {
    const app = await buildTestApp(t)
    await pair(app, 1)
    await pair(app, 2)

    const messages = [item('m1'), item('m2', { user_id: 2 })]
    const response = await post(app, '/send/batch', batchBody(messages, 1))
    assert.equal(response.statusCode, 200, response.body)
    assert.ok(app.gateway.sends.find(1, 'm1'))
    assert.ok(app.gateway.sends.find(2, 'm2'))
  })

  it('fails only the items of an unknown user', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app, 1)

    const messages = [item('m1', { user_id: 1 }), item('m2', { user_id: 7 }), item('m3', { user_id: 1 })]
    const [first, unknown, third] = (await post(app, '/send/batch', { messages })).json().results
    assert.deepEqual(unknown.error, {
      status: 404,
      code: 'GW_ERR_SESSION_NOT_FOUND',
      message: 'No WhatsApp session for user 7 on this gateway. Call POST /start first.'
    })
    assert.ok(first.gateway_message_id)
    assert.ok(third.gateway_message_id)
    assert.deepEqual(record.sends.map((request) => request.text), ['text of m1', 'text of m3'])
  })

  it('fails only the items of a user not connected', async (t) => {
    const app = await buildTestApp(t)
    await pair(app, 1)
    await post(app, '/start', { user_id: 2 })

    const messages = [item('m1', { user_id: 2 }), item('m2', { user_id: 1 })]
    const [waiting, sent] = (await post(app, '/send/batch', { messages })).json().results
    assert.equal(waiting.error.status, 409)
    assert.equal(waiting.error.code, 'GW_ERR_CLIENT_NOT_READY')
    assert.ok(sent.gateway_message_id)
  })

  it('sends the items of each user in body order', async (t) => {
    const { record, factory } = recordingEngines({ delayMs: 5 })
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app, 1)
    await pair(app, 2)

    const order = [['a1', 1], ['b1', 2], ['a2', 1], ['a3', 1], ['b2', 2]]
    const messages = order.map(([messageId, userId]) => item(messageId, { user_id: userId }))
    const response = await post(app, '/send/batch', { messages })
    assert.deepEqual(response.json().results.map((result) => result.message_id), ['a1', 'b1', 'a2', 'a3', 'b2'])
    const sentTexts = record.sends.map((request) => request.text)
    assert.deepEqual(sentTexts.filter((text) => text.includes(' a')), ['text of a1', 'text of a2', 'text of a3'])
    assert.deepEqual(sentTexts.filter((text) => text.includes(' b')), ['text of b1', 'text of b2'])
  })

  it('sends different users at the same time and one user at a time', async (t) => {
    const { record, factory } = recordingEngines({ delayMs: 20 })
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app, 1)
    await pair(app, 2)

    const messages = [
      item('a1', { user_id: 1 }), item('a2', { user_id: 1 }), item('a3', { user_id: 1 }),
      item('b1', { user_id: 2 }), item('b2', { user_id: 2 }), item('b3', { user_id: 2 })
    ]
    const response = await post(app, '/send/batch', { messages })
    assert.ok(response.json().results.every((result) => result.gateway_message_id))
    assert.equal(record.maxRunning, 2)
  })

  it('answers after WA_SEND_BATCH_WAIT_MS when one user\'s send hangs', async (t) => {
    const { factory, release, sends } = hangingEngines(t, (userId) => userId === 2)
    const app = await buildTestApp(t, { engineFactory: factory, env: { WA_SEND_BATCH_WAIT_MS: '200' } })
    await pair(app, 1)
    await pair(app, 2)

    const messages = [
      item('b1', { user_id: 2 }), item('a1', { user_id: 1 }), item('b2', { user_id: 2 }), item('a2', { user_id: 1 })
    ]
    const response = await post(app, '/send/batch', { messages })
    const [b1, a1, b2, a2] = response.json().results
    assert.ok(a1.gateway_message_id)
    assert.ok(a2.gateway_message_id)
    assert.equal(b1.error.status, 504)
    assert.equal(b1.error.code, 'GW_ERR_SEND_TIMEOUT')
    assert.equal(b2.error.code, 'GW_ERR_SEND_TIMEOUT')

    release()
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(sends.filter((text) => text.includes(' b')), ['text of b1'])
  })

  it('responds within the body\'s wait_ms when it is shorter', async (t) => {
    const { factory } = hangingEngines(t)
    const app = await buildTestApp(t, { engineFactory: factory, env: { WA_SEND_BATCH_WAIT_MS: '60000' } })
    await pair(app)

    const started = Date.now()
    const response = await post(app, '/send/batch', { ...batchBody([item('w1')]), wait_ms: 150 })
    const [result] = response.json().results
    assert.equal(result.error.code, 'GW_ERR_SEND_TIMEOUT')
    assert.match(result.error.message, /within 150 ms/)
    // Far below the gateway's own 60 s: the body's wait applied.
    assert.ok(Date.now() - started < 30000)
  })

  it('keeps its own wait when the body\'s wait_ms is longer', async (t) => {
    const { factory } = hangingEngines(t)
    const app = await buildTestApp(t, { engineFactory: factory, env: { WA_SEND_BATCH_WAIT_MS: '150' } })
    await pair(app)

    const response = await post(app, '/send/batch', { ...batchBody([item('w2')]), wait_ms: 60000 })
    const [result] = response.json().results
    assert.equal(result.error.code, 'GW_ERR_SEND_TIMEOUT')
    assert.match(result.error.message, /within 150 ms/)
  })

  it('counts each item in /metrics', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)
    await post(app, '/send/batch', batchBody([item('m1'), item('m2', { to: 'nope' })]))
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
    assert.match(metrics, /wa_gateway_sends_total 1/)
    assert.match(metrics, /wa_gateway_send_failures_total\{code="GW_ERR_INVALID_RECIPIENT"\} 1/)
  })
})

describe('POST /send/batch request checks', () => {
  it(`answers 400 for more than ${MAX_SEND_BATCH} items`, async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    const response = await post(app, '/send/batch', batchBody(items(MAX_SEND_BATCH + 1)))
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
    assert.match(response.json().message, /messages must NOT have more than 50 items/)
    assert.equal(record.sends.length, 0)
  })

  it(`accepts ${MAX_SEND_BATCH} items`, async (t) => {
    const app = await buildTestApp(t)
    await pair(app)

    const response = await post(app, '/send/batch', batchBody(items(MAX_SEND_BATCH)))
    assert.equal(response.statusCode, 200)
    assert.equal(response.json().results.length, MAX_SEND_BATCH)
  })

  it('answers 400 for no items', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send/batch', batchBody([]))
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
    assert.match(response.json().message, /messages must NOT have fewer than 1 items/)
  })

  it('answers 400 without messages', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send/batch', { user_id: 1 })
    assert.equal(response.statusCode, 400)
    assert.match(response.json().message, /messages/)
  })

  it('answers 400 for an item without text', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send/batch', batchBody([item('m1'), { message_id: 'm2', to: CUSTOMER }]))
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
    assert.match(response.json().message, /messages\/1 must have required property 'text'/)
  })

  it('answers 400 naming an item without user_id', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    const messages = [item('m1', { user_id: 1 }), item('m2')]
    const response = await post(app, '/send/batch', { messages })
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
    assert.equal(
      response.json().message,
      "Invalid request: messages/1 must have property 'user_id' when the body has no user_id."
    )
    assert.equal(record.sends.length, 0)
  })

  it('answers 400 for an item user_id that is not a positive integer', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send/batch', { messages: [item('m1', { user_id: 0 })] })
    assert.equal(response.statusCode, 400)
    assert.match(response.json().message, /messages\/0\/user_id must be >= 1/)
  })

  it('answers 400 for an item text over the maximum length', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send/batch', batchBody([item('m1', { text: 'x'.repeat(MAX_TEXT_LENGTH + 1) })]))
    assert.equal(response.statusCode, 400)
    assert.match(response.json().message, /text must NOT have more than 65536 characters/)
  })

  it('answers 400 naming a message_id repeated in the batch', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app)

    const response = await post(app, '/send/batch', batchBody([item('m1'), item('m2'), item('m1')]))
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
    assert.equal(response.json().message, 'Invalid request: message_id "m1" appears more than once in messages.')
    assert.equal(record.sends.length, 0)
  })

  it('answers 401 without a signature', async (t) => {
    const app = await buildTestApp(t)
    const response = await app.inject({ method: 'POST', url: '/send/batch', payload: batchBody(items(1)) })
    assert.equal(response.statusCode, 401)
    assert.equal(response.json().code, 'GW_ERR_SIGNATURE_MISSING')
  })

  it('answers 413 naming the batch limit', async (t) => {
    const app = await buildTestApp(t)
    const text = 'x'.repeat(SEND_BATCH_BODY_LIMIT_BYTES)
    const response = await post(app, '/send/batch', batchBody([item('m1', { text })]))
    assert.equal(response.statusCode, 413)
    assert.equal(response.json().code, 'GW_ERR_BODY_TOO_LARGE')
    assert.equal(response.json().message, `The request body is larger than ${SEND_BATCH_BODY_LIMIT_BYTES} bytes.`)
  })

  it('accepts one maximum-length emoji text', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)

    const body = asciiJson(batchBody([item('m1', { text: EMOJI.repeat(MAX_TEXT_LENGTH) })]))
    const response = await post(app, '/send/batch', body)
    assert.equal(response.statusCode, 200, response.body)
    assert.ok(response.json().results[0].gateway_message_id)
  })

  it('accepts a body larger than the /send limit', async (t) => {
    const app = await buildTestApp(t)
    await pair(app)

    const text = EMOJI.repeat(MAX_TEXT_LENGTH)
    const body = asciiJson(batchBody([item('m1', { text }), item('m2', { text })]))
    assert.ok(Buffer.byteLength(body) > BODY_LIMIT_BYTES)
    const response = await post(app, '/send/batch', body)
    assert.equal(response.statusCode, 200, response.body)
    assert.equal(response.json().results.length, 2)
  })

  it('rejects a body changed to another user', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app, 1)
    await pair(app, 2)

    const signed = JSON.stringify(batchBody(items(1), 1))
    const response = await app.inject({
      method: 'POST',
      url: '/send/batch',
      payload: JSON.stringify(batchBody(items(1), 2)),
      headers: {
        'content-type': 'application/json',
        'x-wa-signature': signature({ method: 'POST', path: '/send/batch', body: signed })
      }
    })
    assert.equal(response.statusCode, 401)
    assert.equal(response.json().code, 'GW_ERR_SIGNATURE_MISMATCH')
    assert.equal(record.sends.length, 0)
  })

  it('uses only the session of user_id', async (t) => {
    const { record, factory } = recordingEngines()
    const app = await buildTestApp(t, { engineFactory: factory })
    await pair(app, 1)

    const response = await post(app, '/send/batch', batchBody(items(1), 2))
    const [result] = response.json().results
    assert.equal(result.error.status, 404)
    assert.equal(result.error.code, 'GW_ERR_SESSION_NOT_FOUND')
    assert.equal(record.sends.length, 0)
  })
})
