import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import pino from 'pino'

import { EngineBase, phoneDigits } from '../src/engines/engine-base.js'
import { logSink } from './helpers.js'

// The smallest engine: its connection is a plain object, and every reopen
// is counted.
class CountingEngine extends EngineBase {
  clientName = 'counting'
  reconnectMessage = 'reconnecting the counting engine'

  constructor (options, defaults) {
    super(options, defaults)
    this.connection = null
    this.opened = 0
    this.unlinked = 0
  }

  async unlinkDevice () {
    this.unlinked += 1
  }

  openConnection () {
    this.opened += 1
    this.connection = {}
  }

  hasConnection () {
    return this.connection !== null
  }

  closeConnection () {
    this.connection = null
    return Promise.resolve()
  }
}

function makeEngine (config = {}) {
  const sink = logSink()
  const logger = pino({ level: 'info' }, sink.stream)
  const defaults = { reconnectBaseMs: 1_000, reconnectMaxMs: 8_000, startTimeoutMs: 60_000 }
  const engine = new CountingEngine({ userId: 1, auth: null, logger, config }, defaults)
  const events = []
  engine.on('disconnected', data => events.push(data))
  return { engine, events, lines: sink.lines }
}

describe('EngineBase first state', () => {
  it('waits while the state is starting', async () => {
    const { engine } = makeEngine({ startTimeoutMs: 50 })
    engine.beginStart()
    let settled = false
    const waiting = engine.waitForFirstState().then(() => { settled = true })

    engine.setState('starting')
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(settled, false)

    engine.setState('qr_pending')
    await waiting
    assert.equal(engine.state, 'qr_pending')
  })

  it('gives up waiting after startTimeoutMs', async () => {
    const { engine } = makeEngine({ startTimeoutMs: 10 })
    engine.beginStart()
    await engine.waitForFirstState()
    assert.equal(engine.state, 'starting')
  })
})

describe('EngineBase reconnecting', () => {
  it('doubles the delay up to reconnectMaxMs', () => {
    const { engine } = makeEngine({ random: () => 1 })
    const delays = [1, 2, 3, 4, 5].map(attempt => {
      engine.reconnectAttempt = attempt
      return engine.backoffDelay()
    })
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 8_000])
  })

  it('waits half the ceiling at least', () => {
    const { engine } = makeEngine({ random: () => 0 })
    engine.reconnectAttempt = 3
    assert.equal(engine.backoffDelay(), 2_000)
  })

  it('reports one disconnect per outage', async (t) => {
    const { engine, events, lines } = makeEngine({ reconnectBaseMs: 1, reconnectMaxMs: 1 })
    engine.beginStart()
    t.after(() => engine.stop())

    engine.scheduleReconnect('network')
    engine.scheduleReconnect('network')
    assert.deepEqual(events, [{ reason: 'network', willReconnect: true }])
    assert.equal(engine.state, 'disconnected')
    const attempts = lines.filter(line => line.msg === 'reconnecting the counting engine')
    assert.deepEqual(attempts.map(line => line.attempt), [1, 2])

    await new Promise(resolve => setTimeout(resolve, 20))
    assert.equal(engine.opened, 2)
  })

  it('reports again after resetReconnect', () => {
    const { engine, events } = makeEngine({ reconnectBaseMs: 60_000, reconnectMaxMs: 60_000 })
    engine.beginStart()

    engine.scheduleReconnect('network')
    engine.releaseConnection()
    engine.resetReconnect()
    engine.scheduleReconnect('restart')
    engine.releaseConnection()

    assert.deepEqual(events.map(event => event.reason), ['network', 'restart'])
    assert.equal(engine.reconnectAttempt, 1)
  })

  it('does not reopen once stopped', async () => {
    const { engine } = makeEngine({ reconnectBaseMs: 1, reconnectMaxMs: 1 })
    engine.beginStart()
    engine.scheduleReconnect('network')
    engine.stopping = true

    await new Promise(resolve => setTimeout(resolve, 20))
    assert.equal(engine.opened, 0)
  })
})

describe('EngineBase stop', () => {
  it('reports stopped only once', async () => {
    const { engine, events } = makeEngine()
    engine.beginStart()
    engine.openConnection()

    await engine.stop()
    await engine.stop()

    assert.equal(engine.state, 'stopped')
    assert.equal(engine.hasConnection(), false)
    assert.deepEqual(events, [{ reason: 'stopped', willReconnect: false }])
  })
})

describe('EngineBase QR codes', () => {
  it('gives the first QR 60 s and later ones 20 s', () => {
    const { engine } = makeEngine()
    const qrs = []
    engine.on('qr', data => qrs.push(data))
    engine.beginStart()
    engine.openConnection()
    engine.connectionQrCount = 0

    const before = Date.now()
    engine.emitQr('first')
    engine.emitQr('second')
    const after = Date.now()

    const [first, second] = qrs.map(({ expiresAt }) => expiresAt.getTime())
    assert.ok(first >= before + 60_000)
    assert.ok(first <= after + 60_000)
    assert.ok(second >= before + 20_000)
    assert.ok(second <= after + 20_000)
    assert.equal(engine.state, 'qr_pending')
  })

  it('expires the run past qrMax', () => {
    const { engine, events } = makeEngine({ qrMax: 1 })
    engine.beginStart()
    engine.openConnection()
    engine.connectionQrCount = 0

    engine.emitQr('first')
    engine.emitQr('second')

    assert.equal(engine.state, 'qr_expired')
    assert.equal(engine.hasConnection(), false)
    assert.deepEqual(events, [{ reason: 'qr_timeout', willReconnect: false }])
  })
})

describe('EngineBase logout and readiness', () => {
  it('unlinks only a connected device', async () => {
    const { engine } = makeEngine()
    const loggedOut = []
    engine.on('logged_out', data => loggedOut.push(data))
    engine.beginStart()
    engine.openConnection()
    engine.setState('connected')

    await engine.logout()

    assert.equal(engine.unlinked, 1)
    assert.equal(engine.state, 'logged_out')
    assert.deepEqual(loggedOut, [{ reason: 'requested' }])
  })

  it('skips unlinking while pairing', async () => {
    const { engine } = makeEngine()
    engine.beginStart()
    engine.openConnection()
    engine.setState('qr_pending')

    await engine.logout()

    assert.equal(engine.unlinked, 0)
    assert.equal(engine.state, 'logged_out')
  })

  it('rejects sending before the connection opens', () => {
    const { engine } = makeEngine()
    engine.beginStart()
    engine.openConnection()

    assert.throws(() => engine.assertConnected(), { code: 'GW_ERR_CLIENT_NOT_READY' })
    engine.setState('connected')
    assert.doesNotThrow(() => engine.assertConnected())
  })

  it('keeps only the digits of a phone', () => {
    assert.equal(phoneDigits('+55 (11) 98765-4321'), '5511987654321')
    assert.throws(() => phoneDigits('no digits'), { code: 'GW_ERR_INVALID_PHONE' })
  })
})
