import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { BODY_LIMIT_BYTES } from '../src/app.js'
import { createEngine as createSimEngine } from '../src/engines/sim.js'
import { MAX_TEXT_LENGTH } from '../src/routes/schemas.js'
import { EMOJI, SECRET, asciiJson, buildTestApp, call, get, post, signature } from './helpers.js'

async function connectedTestApp (t) {
  const app = await buildTestApp(t)
  await post(app, '/start', { user_id: 1 })
  const scan = await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })
  assert.equal(scan.json().state, 'connected')
  return app
}

const USER_SCOPED = [
  ['POST', '/start', {}],
  ['POST', '/stop', {}],
  ['POST', '/logout', {}],
  ['GET', '/status', undefined],
  ['GET', '/qr', undefined],
  ['POST', '/send', { message_id: 'm1', to: '+5511900000001', text: 'hi' }],
  ['POST', '/sim/scan', { phone: '+5511900000009' }],
  ['POST', '/sim/inbound', { from: '+5511900000001', text: 'hi' }],
  ['POST', '/sim/disconnect', { reason: 'network' }]
]

describe('user_id', () => {
  for (const [method, url, body] of USER_SCOPED) {
    it(`${method} ${url} without user_id answers 400`, async (t) => {
      const app = await buildTestApp(t)
      const response = await call(app, method, url, body)
      assert.equal(response.statusCode, 400)
      assert.equal(response.json().code, 'GW_ERR_USER_ID_REQUIRED')
    })
  }

  it('rejects a user_id that is not a positive integer', async (t) => {
    const app = await buildTestApp(t)
    for (const userId of ['7', 0, -1, 1.5, true]) {
      const response = await post(app, '/start', { user_id: userId })
      assert.equal(response.statusCode, 400, `user_id ${JSON.stringify(userId)}`)
      assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
      assert.match(response.json().message, /user_id/)
    }
  })

  it('rejects a query user_id that is not digits', async (t) => {
    const app = await buildTestApp(t)
    const response = await get(app, '/status?user_id=abc')
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
  })

  it('rejects a JSON body that is not an object', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/start', [1, 2])
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
  })
})

describe('request body', () => {
  it('answers 400 for invalid JSON', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/start', '{"user_id": 1,')
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_JSON')
  })

  it('accepts a /send text of the maximum length in escaped emoji', async (t) => {
    const app = await connectedTestApp(t)
    const body = { user_id: 1, message_id: 'm1', to: '+5511900000001', text: EMOJI.repeat(MAX_TEXT_LENGTH) }
    const response = await post(app, '/send', asciiJson(body))
    assert.equal(response.statusCode, 202, response.body)
  })

  it('accepts a /sim/inbound text of the maximum length in escaped emoji', async (t) => {
    const app = await connectedTestApp(t)
    const body = { user_id: 1, from: '+5511900000001', text: EMOJI.repeat(MAX_TEXT_LENGTH), push_name: EMOJI.repeat(256) }
    const response = await post(app, '/sim/inbound', asciiJson(body))
    assert.equal(response.statusCode, 202, response.body)
  })

  it('answers 400 naming the text for one character over the maximum length', async (t) => {
    const app = await connectedTestApp(t)
    const body = { user_id: 1, message_id: 'm1', to: '+5511900000001', text: EMOJI.repeat(MAX_TEXT_LENGTH + 1) }
    const response = await post(app, '/send', asciiJson(body))
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
    assert.match(response.json().message, /text must NOT have more than 65536 characters/)
  })

  it('answers 413 naming the limit in bytes for a larger body', async (t) => {
    const app = await buildTestApp(t)
    const text = 'x'.repeat(BODY_LIMIT_BYTES)
    const response = await post(app, '/send', { user_id: 1, message_id: 'm1', to: '+5511900000001', text })
    assert.equal(response.statusCode, 413)
    assert.equal(response.json().code, 'GW_ERR_BODY_TOO_LARGE')
    assert.equal(response.json().message, `The request body is larger than ${BODY_LIMIT_BYTES} bytes.`)
  })

  it('answers 415 for a body that is not JSON', async (t) => {
    const app = await buildTestApp(t)
    const response = await app.inject({
      method: 'POST',
      url: '/start',
      payload: 'user_id=1',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-wa-signature': signature({ method: 'POST', path: '/start', body: 'user_id=1' })
      }
    })
    assert.equal(response.statusCode, 415)
    assert.equal(response.json().code, 'GW_ERR_UNSUPPORTED_MEDIA_TYPE')
  })

  it('answers 400 for /send with an empty text', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send', { user_id: 1, message_id: 'm1', to: '+5511900000001', text: '' })
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
    assert.match(response.json().message, /text/)
  })

  it('answers 400 for /send without message_id', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/send', { user_id: 1, to: '+5511900000001', text: 'hi' })
    assert.equal(response.statusCode, 400)
    assert.match(response.json().message, /message_id/)
  })

  it('answers 400 for an unknown disconnect reason', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/sim/disconnect', { user_id: 1, reason: 'cosmic_rays' })
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_BODY')
  })
})

describe('signature', () => {
  it('answers 401 without the header', async (t) => {
    const app = await buildTestApp(t)
    const response = await app.inject({ method: 'POST', url: '/start', payload: { user_id: 1 } })
    assert.equal(response.statusCode, 401)
    assert.equal(response.json().code, 'GW_ERR_SIGNATURE_MISSING')
  })

  it('answers 401 for a malformed header', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/start', { user_id: 1 }, { headers: { 'x-wa-signature': 't=1,v1=abc' } })
    assert.equal(response.statusCode, 401)
    assert.equal(response.json().code, 'GW_ERR_SIGNATURE_MALFORMED')
  })

  it('answers 401 for a stale timestamp', async (t) => {
    const app = await buildTestApp(t)
    const timestamp = Math.floor(Date.now() / 1000) - 301
    const response = await post(app, '/start', { user_id: 1 }, { timestamp })
    assert.equal(response.statusCode, 401)
    assert.equal(response.json().code, 'GW_ERR_SIGNATURE_STALE')
  })

  it('answers 401 for another secret', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/start', { user_id: 1 }, { secret: 'not-the-secret' })
    assert.equal(response.statusCode, 401)
    assert.equal(response.json().code, 'GW_ERR_SIGNATURE_MISMATCH')
  })

  it('answers 401 when the body differs from the signed one', async (t) => {
    const app = await buildTestApp(t)
    const response = await app.inject({
      method: 'POST',
      url: '/start',
      payload: '{"user_id":2}',
      headers: {
        'content-type': 'application/json',
        'x-wa-signature': signature({ method: 'POST', path: '/start', body: '{"user_id":1}' })
      }
    })
    assert.equal(response.statusCode, 401)
    assert.equal(response.json().code, 'GW_ERR_SIGNATURE_MISMATCH')
  })

  it('checks the signature before the JSON', async (t) => {
    const app = await buildTestApp(t)
    const response = await app.inject({
      method: 'POST',
      url: '/start',
      payload: '{not json',
      headers: { 'content-type': 'application/json', 'x-wa-signature': 't=1,v1=abc' }
    })
    assert.equal(response.statusCode, 401)
  })

  it('accepts every configured secret', async (t) => {
    const app = await buildTestApp(t, { env: { WA_GATEWAY_SECRET: `new-secret,${SECRET}` } })
    const response = await post(app, '/start', { user_id: 1 }, { secret: SECRET })
    assert.equal(response.statusCode, 202)
  })

  it('is not needed for /healthz and /metrics', async (t) => {
    const app = await buildTestApp(t)
    assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200)
  })

  it('is needed for unknown paths, which then answer 404', async (t) => {
    const app = await buildTestApp(t)
    assert.equal((await app.inject({ method: 'GET', url: '/nope' })).statusCode, 401)
    const response = await get(app, '/nope')
    assert.equal(response.statusCode, 404)
    assert.equal(response.json().code, 'GW_ERR_NOT_FOUND')
  })
})

describe('POST /start', () => {
  it('answers 202 with the first state', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/start', { user_id: 1 })
    assert.equal(response.statusCode, 202)
    assert.deepEqual(response.json(), { user_id: 1, state: 'qr_pending' })
  })

  it('is a no-op for a started session', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    const qr = (await get(app, '/qr?user_id=1')).json().qr

    const again = await post(app, '/start', { user_id: 1 })
    assert.equal(again.statusCode, 202)
    assert.equal(again.json().state, 'qr_pending')
    assert.equal((await get(app, '/qr?user_id=1')).json().qr, qr)
    assert.equal(app.gateway.sessions.liveCount(), 1)
  })

  it('answers 503 past WA_MAX_SESSIONS', async (t) => {
    const app = await buildTestApp(t, { env: { WA_MAX_SESSIONS: '2' } })
    assert.equal((await post(app, '/start', { user_id: 1 })).statusCode, 202)
    assert.equal((await post(app, '/start', { user_id: 2 })).statusCode, 202)

    const response = await post(app, '/start', { user_id: 3 })
    assert.equal(response.statusCode, 503)
    assert.equal(response.json().code, 'GW_ERR_MAX_SESSIONS')
    assert.match(response.json().message, /2 sessions/)
  })

  it('still answers a started session at WA_MAX_SESSIONS', async (t) => {
    const app = await buildTestApp(t, { env: { WA_MAX_SESSIONS: '1' } })
    await post(app, '/start', { user_id: 1 })
    assert.equal((await post(app, '/start', { user_id: 1 })).statusCode, 202)
  })

  it('frees a slot when a session stops', async (t) => {
    const app = await buildTestApp(t, { env: { WA_MAX_SESSIONS: '1' } })
    await post(app, '/start', { user_id: 1 })
    await post(app, '/stop', { user_id: 1 })
    assert.equal((await post(app, '/start', { user_id: 2 })).statusCode, 202)
  })
})

describe('GET /status and /qr', () => {
  it('answer 404 for an unknown user', async (t) => {
    const app = await buildTestApp(t)
    const status = await get(app, '/status?user_id=5')
    assert.equal(status.statusCode, 404)
    assert.equal(status.json().code, 'GW_ERR_SESSION_NOT_FOUND')
    assert.equal((await get(app, '/qr?user_id=5')).statusCode, 404)
  })

  it('/qr answers 404 once the session is connected', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })
    const response = await get(app, '/qr?user_id=1')
    assert.equal(response.statusCode, 404)
    assert.equal(response.json().code, 'GW_ERR_QR_NOT_PENDING')
  })

  it('/status reports the engine and the QR', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    const status = (await get(app, '/status?user_id=1')).json()
    assert.equal(status.state, 'qr_pending')
    assert.equal(status.qr_available, true)
    assert.equal(status.engine, 'sim')
    assert.equal(status.jid, null)
  })
})

describe('sim routes', () => {
  it('answer 404 GW_ERR_SIM_ONLY with another engine', async (t) => {
    const app = await buildTestApp(t, {
      env: { WA_ENGINE: 'baileys' },
      engineFactory: createSimEngine
    })
    for (const [url, body] of [
      ['/sim/scan', { user_id: 1, phone: '+5511900000009' }],
      ['/sim/inbound', { user_id: 1, from: '+5511900000001', text: 'hi' }],
      ['/sim/disconnect', { user_id: 1, reason: 'network' }]
    ]) {
      const response = await post(app, url, body)
      assert.equal(response.statusCode, 404, url)
      assert.equal(response.json().code, 'GW_ERR_SIM_ONLY')
    }
  })

  it('/sim/scan rejects a phone that is not a number', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    const response = await post(app, '/sim/scan', { user_id: 1, phone: 'call me' })
    assert.equal(response.statusCode, 400)
    assert.equal(response.json().code, 'GW_ERR_INVALID_PHONE')
  })

  it('/sim/inbound answers 409 before pairing', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    const response = await post(app, '/sim/inbound', { user_id: 1, from: '+5511900000001', text: 'hi' })
    assert.equal(response.statusCode, 409)
    assert.equal(response.json().code, 'GW_ERR_CLIENT_NOT_READY')
  })
})

describe('GET /healthz', () => {
  it('reports sessions, engine, outbox and dead letters', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    const health = (await app.inject({ method: 'GET', url: '/healthz' })).json()
    assert.equal(health.engine, 'sim')
    assert.equal(health.sessions, 1)
    assert.equal(health.sessions_by_state.qr_pending, 1)
    assert.ok(health.outbox_pending >= 1)
    assert.deepEqual(health.dead_letters, { count: 0, latest_event_ids: [] })
  })
})

describe('GET /metrics', () => {
  it('exposes sessions by state in Prometheus text', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    const response = await app.inject({ method: 'GET', url: '/metrics' })
    assert.match(response.headers['content-type'], /text\/plain/)
    assert.match(response.body, /wa_gateway_sessions\{state="qr_pending"\} 1/)
    assert.match(response.body, /wa_gateway_outbox_pending \d+/)
    assert.match(response.body, /wa_gateway_dead_letters 0/)
  })
})

describe('POST /outbox/dead-letters/requeue', () => {
  it('returns how many dead letters went back to the outbox', async (t) => {
    const app = await buildTestApp(t)

    const response = await post(app, '/outbox/dead-letters/requeue', {})

    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json(), { requeued: 0 })
  })

  it('takes a user_id to requeue one user only', async (t) => {
    const app = await buildTestApp(t)
    const insert = app.gateway.db.prepare(
      'INSERT INTO dead_letters (seq, event_id, user_id, type, occurred_at, data, http_status, reason, failed_at) ' +
        "VALUES (?, ?, ?, 'message.received', '2026-01-01T00:00:00.000Z', '{}', 400, 'rejected', '2026-01-01T00:00:01.000Z')"
    )
    insert.run(1, 'e0a1f7c2-0000-4000-8000-000000000001', 7)
    insert.run(2, 'e0a1f7c2-0000-4000-8000-000000000002', 8)

    const response = await post(app, '/outbox/dead-letters/requeue', { user_id: 7 })

    assert.deepEqual(response.json(), { requeued: 1 })
    assert.equal(app.gateway.outbox.deadLetterCount(), 1)
  })

  it('needs a signature', async (t) => {
    const app = await buildTestApp(t)

    const response = await app.inject({
      method: 'POST', url: '/outbox/dead-letters/requeue', payload: {}
    })

    assert.equal(response.statusCode, 401)
  })
})
