import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { describe, it } from 'node:test'

import { createEngine as createSimEngine } from '../src/engines/sim.js'
import { buildTestApp, get, makeDataDir, post, startFakeDjango, waitFor } from './helpers.js'

async function pairedDataDir (t, userIds = [1]) {
  const dataDir = await makeDataDir(t)
  const app = await buildTestApp(t, { dataDir })
  for (const userId of userIds) {
    await post(app, '/start', { user_id: userId })
    await post(app, '/sim/scan', { user_id: userId, phone: `+55119000000${String(userId).padStart(2, '0')}` })
  }
  await app.close()
  return dataDir
}

// An engine that starts and then never reports anything, like a client
// stuck connecting with auth the phone no longer accepts.
class SilentEngine extends EventEmitter {
  state = 'starting'
  async start () {}
  async stop () {
    this.state = 'stopped'
  }
}

describe('restore at boot', () => {
  it('reconnects a paired session without a new QR', async (t) => {
    const dataDir = await pairedDataDir(t)
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, { dataDir, env: { WA_CALLBACK_URL: django.url } })
    const restartedAt = new Date().toISOString()
    // Events of the first run are still in the outbox and go out too.
    const sinceRestart = () => django.eventsOf(1).filter((event) => event.occurred_at >= restartedAt)

    await app.gateway.sessions.restoreAll()
    assert.equal((await get(app, '/status?user_id=1')).json().state, 'connected')
    await waitFor(() => sinceRestart().some((event) => event.type === 'session.connected'))
    assert.deepEqual(sinceRestart().map((event) => event.type), ['session.connected'])
    assert.equal(sinceRestart()[0].data.phone, '+5511900000001')
  })

  it('restores at most WA_RESTORE_CONCURRENCY sessions at a time', async (t) => {
    const dataDir = await pairedDataDir(t, [1, 2, 3, 4, 5, 6, 7])
    let running = 0
    let peak = 0
    const factory = (options) => {
      const engine = createSimEngine(options)
      const start = engine.start.bind(engine)
      engine.start = async () => {
        running += 1
        peak = Math.max(peak, running)
        await new Promise((resolve) => setTimeout(resolve, 30))
        await start()
        running -= 1
      }
      return engine
    }
    const app = await buildTestApp(t, { dataDir, engineFactory: factory, env: { WA_RESTORE_CONCURRENCY: '2' } })

    await app.gateway.sessions.restoreAll()
    assert.equal(peak, 2)
    assert.equal(app.gateway.sessions.sessionCounts().connected, 7)
  })

  it('wipes the auth of a session that shows no event in time', async (t) => {
    const dataDir = await pairedDataDir(t, [1, 2])
    const django = await startFakeDjango(t)
    const factory = (options) => (options.userId === 1 ? new SilentEngine() : createSimEngine(options))
    const app = await buildTestApp(t, {
      dataDir,
      engineFactory: factory,
      env: { WA_CALLBACK_URL: django.url, WA_RESTORE_TIMEOUT_MS: '100' }
    })

    await app.gateway.sessions.restoreAll()
    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'session.logged_out'), { message: 'restore_failed' })
    assert.deepEqual(event.data, { reason: 'restore_failed' })
    assert.equal((await get(app, '/status?user_id=1')).json().state, 'logged_out')
    await waitFor(async () => !(await app.gateway.authStore.has(1)), { message: 'auth wiped' })
    assert.equal(await app.gateway.authStore.has(2), true)
    assert.equal(app.gateway.sessions.liveCount(), 1)
  })

  it('wipes the auth of a session whose restore throws', async (t) => {
    const dataDir = await pairedDataDir(t)
    const django = await startFakeDjango(t)
    const factory = (options) => {
      const engine = createSimEngine(options)
      engine.start = async () => {
        throw new Error('auth_failure')
      }
      return engine
    }
    const app = await buildTestApp(t, { dataDir, engineFactory: factory, env: { WA_CALLBACK_URL: django.url } })

    await app.gateway.sessions.restoreAll()
    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'session.logged_out'))
    assert.equal(event.data.reason, 'restore_failed')
    assert.equal(await app.gateway.authStore.has(1), false)
  })

  it('offers a QR after a failed restore', async (t) => {
    const dataDir = await pairedDataDir(t)
    let silent = true
    const factory = (options) => (silent ? new SilentEngine() : createSimEngine(options))
    const app = await buildTestApp(t, { dataDir, engineFactory: factory, env: { WA_RESTORE_TIMEOUT_MS: '50' } })
    await app.gateway.sessions.restoreAll()
    await waitFor(async () => (await get(app, '/status?user_id=1')).json().state === 'logged_out')

    silent = false
    await waitFor(async () => !(await app.gateway.authStore.has(1)))
    assert.equal((await post(app, '/start', { user_id: 1 })).json().state, 'qr_pending')
  })

  it('keeps the auth of a session that reports a network drop while restoring', async (t) => {
    const dataDir = await pairedDataDir(t)
    const factory = () => {
      const engine = new SilentEngine()
      engine.start = async () => {
        setImmediate(() => engine.emit('disconnected', { reason: 'network', willReconnect: true }))
      }
      return engine
    }
    const app = await buildTestApp(t, { dataDir, engineFactory: factory, env: { WA_RESTORE_TIMEOUT_MS: '50' } })
    await app.gateway.sessions.restoreAll()
    await new Promise((resolve) => setTimeout(resolve, 150))
    assert.equal((await get(app, '/status?user_id=1')).json().state, 'disconnected')
    assert.equal(await app.gateway.authStore.has(1), true)
  })

  it('restores no more than WA_MAX_SESSIONS and reports the rest stopped', async (t) => {
    const dataDir = await pairedDataDir(t, [1, 2, 3])
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, { dataDir, env: { WA_CALLBACK_URL: django.url, WA_MAX_SESSIONS: '2' } })
    await app.gateway.sessions.restoreAll()

    assert.equal(app.gateway.sessions.liveCount(), 2)
    // The first run's shutdown events reach this Django too; pick the stop.
    const stopped = await waitFor(() => django.events.find((event) => event.type === 'session.disconnected' && event.data.reason === 'stopped'))
    assert.deepEqual(stopped.data, { reason: 'stopped', will_reconnect: false })
    assert.equal(await app.gateway.authStore.has(stopped.user_id), true)
  })
})

describe('POST /stop', () => {
  it('closes the client and keeps the auth', async (t) => {
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, { env: { WA_CALLBACK_URL: django.url } })
    await post(app, '/start', { user_id: 1 })
    await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })

    const response = await post(app, '/stop', { user_id: 1 })
    assert.deepEqual(response.json(), { user_id: 1, state: 'stopped' })
    assert.equal(app.gateway.sessions.liveCount(), 0)
    assert.equal(await app.gateway.authStore.has(1), true)
    const event = await waitFor(() => django.eventsOf(1).find((item) => item.type === 'session.disconnected'))
    assert.deepEqual(event.data, { reason: 'stopped', will_reconnect: false })
  })

  it('restarts a stopped session without a QR', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })
    await post(app, '/stop', { user_id: 1 })
    assert.equal((await post(app, '/start', { user_id: 1 })).json().state, 'connected')
  })

  it('answers 200 for a user without a session', async (t) => {
    const app = await buildTestApp(t)
    const response = await post(app, '/stop', { user_id: 9 })
    assert.deepEqual(response.json(), { user_id: 9, state: 'stopped' })
  })
})

describe('POST /logout', () => {
  it('wipes the auth of a stopped session', async (t) => {
    const app = await buildTestApp(t)
    await post(app, '/start', { user_id: 1 })
    await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })
    await post(app, '/stop', { user_id: 1 })

    const response = await post(app, '/logout', { user_id: 1 })
    assert.equal(response.json().state, 'logged_out')
    assert.equal(await app.gateway.authStore.has(1), false)
  })

  it('answers 200 for a user without a session', async (t) => {
    const app = await buildTestApp(t)
    assert.equal((await post(app, '/logout', { user_id: 9 })).statusCode, 200)
  })
})

describe('shutdown', () => {
  it('stops every client without logging out and flushes their events', async (t) => {
    const dataDir = await makeDataDir(t)
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, { dataDir, env: { WA_CALLBACK_URL: django.url } })
    await post(app, '/start', { user_id: 1 })
    await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })
    const { authStore } = app.gateway

    await app.close()
    assert.deepEqual(django.typesOf(1), ['session.qr', 'session.connected', 'session.disconnected'])
    assert.deepEqual(django.eventsOf(1).at(-1).data, { reason: 'restart', will_reconnect: true })
    assert.equal(await authStore.has(1), true)
  })

  it('reports a client that was still pairing as stopped', async (t) => {
    const django = await startFakeDjango(t)
    const app = await buildTestApp(t, { env: { WA_CALLBACK_URL: django.url } })
    await post(app, '/start', { user_id: 1 })

    await app.close()
    assert.deepEqual(django.typesOf(1), ['session.qr', 'session.disconnected'])
    assert.deepEqual(django.eventsOf(1).at(-1).data, { reason: 'stopped', will_reconnect: false })
  })
})

describe('dead letters through the app', () => {
  it('appear in /healthz and /metrics', async (t) => {
    const django = await startFakeDjango(t, { respond: () => 400 })
    const app = await buildTestApp(t, { env: { WA_CALLBACK_URL: django.url } })
    await post(app, '/start', { user_id: 1 })

    const health = await waitFor(async () => {
      const body = (await app.inject({ method: 'GET', url: '/healthz' })).json()
      return body.dead_letters.count === 1 && body
    }, { message: 'a dead letter' })
    assert.equal(health.dead_letters.latest_event_ids.length, 1)
    assert.equal(health.outbox_pending, 0)
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
    assert.match(metrics, /wa_gateway_dead_letters 1/)
    assert.match(metrics, /wa_gateway_callback_attempts_total\{outcome="dead_lettered"\} 1/)
  })
})

// An engine that saves creds before any scan, as Baileys does, and whose QR
// then expires unscanned.
class UnscannedEngine extends EventEmitter {
  state = 'starting'

  constructor ({ auth }) {
    super()
    this.auth = auth
  }

  async start () {
    await this.auth.set({ creds: '{"noiseKey":"fresh"}' })
    this.state = 'qr_expired'
    setImmediate(() => this.emit('disconnected', { reason: 'qr_timeout', willReconnect: false }))
  }

  async stop () {
    this.state = 'stopped'
  }
}

describe('unpaired auth', () => {
  it('wipes creds saved before a QR that expired unscanned', async (t) => {
    const app = await buildTestApp(t, { engineFactory: (options) => new UnscannedEngine(options) })

    await post(app, '/start', { user_id: 1 })

    await waitFor(async () => (await get(app, '/status?user_id=1')).json().state === 'qr_expired')
    await waitFor(async () => !(await app.gateway.authStore.has(1)), { message: 'unpaired auth wiped' })
    assert.deepEqual(await app.gateway.authStore.list(), [])
  })
})
