import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'

import { ConfigError, DEVELOPMENT_SECRET, GATEWAY_ROOT, loadConfig } from '../src/config.js'

function problemsOf (env) {
  try {
    loadConfig(env)
  } catch (error) {
    assert.ok(error instanceof ConfigError)
    return error.problems
  }
  assert.fail('expected a ConfigError')
}

describe('loadConfig', () => {
  it('runs the sim engine on 127.0.0.1:3000 by default', () => {
    const config = loadConfig({})
    assert.equal(config.engine, 'sim')
    assert.equal(config.host, '127.0.0.1')
    assert.equal(config.port, 3000)
    assert.equal(config.callback.url, 'http://127.0.0.1:8000/api/settings/whatsapp/session/update')
    assert.deepEqual(config.secrets, [DEVELOPMENT_SECRET])
    assert.equal(config.maxSessions, 500)
    assert.equal(config.restoreConcurrency, 5)
    assert.equal(config.restoreTimeoutMs, 60000)
  })

  it('puts the data dir in gateway_node/data by default', () => {
    assert.equal(loadConfig({}).dataDir, join(GATEWAY_ROOT, 'data'))
  })

  it('resolves a relative WA_DATA_DIR against the gateway_node folder', () => {
    assert.equal(loadConfig({ WA_DATA_DIR: 'var/state' }).dataDir, join(GATEWAY_ROOT, 'var', 'state'))
    assert.equal(loadConfig({ WA_DATA_DIR: '/srv/wa' }).dataDir, '/srv/wa')
  })

  it('splits WA_GATEWAY_SECRET on commas, first secret first', () => {
    assert.deepEqual(loadConfig({ WA_GATEWAY_SECRET: ' new , old ' }).secrets, ['new', 'old'])
  })

  it('parses the sim settings', () => {
    const { engineOptions } = loadConfig({
      WA_SIM_ACK_DELAYS_MS: '0,0,0',
      WA_SIM_QR_TTL_MS: '1000,500',
      WA_SIM_QR_MAX: '2',
      WA_SIM_UNREGISTERED: '5511900000077, +5511900000078'
    })
    assert.deepEqual(engineOptions.ackDelaysMs, { sent: 0, delivered: 0, read: 0 })
    assert.deepEqual(engineOptions.qrTtlMs, { first: 1000, next: 500 })
    assert.equal(engineOptions.qrMax, 2)
    assert.deepEqual([...engineOptions.unregistered], ['5511900000077', '5511900000078'])
  })

  it('treats an empty value as unset', () => {
    assert.equal(loadConfig({ PORT: '', WA_ENGINE: '' }).port, 3000)
  })

  it('names every invalid variable', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      WA_ENGINE: 'selenium',
      WA_MAX_SESSIONS: '0',
      WA_CALLBACK_URL: 'ftp://127.0.0.1/callback',
      WA_SIM_ACK_DELAYS_MS: '1,2',
      WA_SIM_UNREGISTERED: 'abc',
      LOG_LEVEL: 'loud'
    })
    for (const name of ['PORT', 'WA_ENGINE', 'WA_MAX_SESSIONS', 'WA_CALLBACK_URL', 'WA_SIM_ACK_DELAYS_MS', 'WA_SIM_UNREGISTERED', 'LOG_LEVEL']) {
      assert.ok(problems.some((problem) => problem.startsWith(name)), `${name} in ${problems.join(' | ')}`)
    }
  })

  it('rejects ack delays that go down', () => {
    assert.match(problemsOf({ WA_SIM_ACK_DELAYS_MS: '300,100,50' })[0], /^WA_SIM_ACK_DELAYS_MS/)
  })

  it('rejects an empty secret', () => {
    assert.match(problemsOf({ WA_GATEWAY_SECRET: '' })[0], /^WA_GATEWAY_SECRET/)
  })

  it('rejects the development secret with a real engine', () => {
    assert.match(problemsOf({ WA_ENGINE: 'baileys' })[0], /WA_GATEWAY_SECRET.*WA_ENGINE=baileys/)
  })

  it('rejects the development secret when NODE_ENV is production', () => {
    assert.match(problemsOf({ NODE_ENV: 'production' })[0], /NODE_ENV=production/)
  })

  it('allows the development secret when WA_ALLOW_DEV_SECRET is true', () => {
    assert.equal(loadConfig({ WA_ENGINE: 'webjs', WA_ALLOW_DEV_SECRET: 'true' }).engine, 'webjs')
  })

  it('accepts a real engine with a real secret', () => {
    assert.equal(loadConfig({ WA_ENGINE: 'baileys', WA_GATEWAY_SECRET: 'a-long-random-secret' }).engine, 'baileys')
  })
})
