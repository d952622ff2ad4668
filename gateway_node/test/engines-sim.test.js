import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { FileAuthStore } from '../src/auth-store.js'
import { loadConfig } from '../src/config.js'
import { createEngine } from '../src/engines/sim.js'
import { loadEngine } from '../src/engines/index.js'
import { createLogger } from '../src/logger.js'
import { makeDataDir, waitFor } from './helpers.js'

const logger = createLogger({ level: 'silent' })

async function makeEngine (t, env = {}) {
  const dataDir = await makeDataDir(t)
  const config = loadConfig({ WA_SIM_ACK_DELAYS_MS: '0,0,0', ...env })
  const auth = new FileAuthStore({ dataDir, logger }).forUser(1)
  const engine = createEngine({ userId: 1, auth, logger, config: config.engineOptions })
  const events = []
  for (const name of ['qr', 'connected', 'disconnected', 'logged_out', 'message', 'ack', 'lid_mapped']) {
    engine.on(name, (data) => events.push({ name, data, at: Date.now() }))
  }
  t.after(() => engine.stop())
  return { engine, events, auth }
}

async function paired (t, env) {
  const setup = await makeEngine(t, env)
  await setup.engine.start()
  await setup.engine.scan('+5511900000009')
  setup.events.length = 0
  return setup
}

describe('sim engine', () => {
  it('is what loadEngine("sim") returns', async () => {
    assert.equal(await loadEngine('sim'), createEngine)
  })

  it('loadEngine rejects an unknown engine', async () => {
    await assert.rejects(loadEngine('selenium'), /Unknown WhatsApp engine "selenium"/)
  })

  it('shows a QR in WhatsApp\'s shape with its expiry', async (t) => {
    const { engine, events } = await makeEngine(t, { WA_SIM_QR_TTL_MS: '60000,20000' })
    const before = Date.now()
    await engine.start()
    assert.equal(engine.state, 'qr_pending')
    const { qr, expiresAt } = events[0].data
    const [ref, ...keys] = qr.split(',')
    assert.match(ref, /^2@[A-Za-z0-9+/]+=*$/)
    assert.equal(keys.length, 3)
    for (const key of keys) assert.equal(Buffer.from(key, 'base64').length, 32)
    assert.ok(expiresAt instanceof Date)
    assert.ok(expiresAt.getTime() - before >= 60000)
  })

  it('gives the first QR the first TTL and later ones the next', async (t) => {
    const { engine, events } = await makeEngine(t, { WA_SIM_QR_TTL_MS: '80,30', WA_SIM_QR_MAX: '3' })
    await engine.start()
    await waitFor(() => events.length === 2)
    const [first, second] = events.map((event) => event.data.expiresAt - event.at)
    assert.ok(first >= 79, `first TTL ${first}`)
    assert.ok(first <= 81, `first TTL ${first}`)
    assert.ok(second >= 29, `second TTL ${second}`)
    assert.ok(second <= 31, `second TTL ${second}`)
  })

  it('restores a paired account from its auth without a QR', async (t) => {
    const first = await paired(t)
    await first.engine.stop()

    const engine = createEngine({ userId: 1, auth: first.auth, logger, config: loadConfig({}).engineOptions })
    const events = []
    engine.on('qr', () => events.push('qr'))
    engine.on('connected', () => events.push('connected'))
    await engine.start()
    assert.deepEqual(events, ['connected'])
    await engine.stop()
  })

  it('refuses to send while not connected', async (t) => {
    const { engine } = await makeEngine(t)
    await engine.start()
    await assert.rejects(engine.send({ to: '5511900000001@s.whatsapp.net', text: 'hi' }), { code: 'GW_ERR_CLIENT_NOT_READY' })
  })

  it('reports a failed ack for a recipient without WhatsApp', async (t) => {
    const { engine, events } = await paired(t, { WA_SIM_UNREGISTERED: '5511900000077' })
    await engine.send({ to: '5511900000077@s.whatsapp.net', text: 'hi' })
    await waitFor(() => events.filter((event) => event.name === 'ack').length === 2)
    const acks = events.filter((event) => event.name === 'ack').map((event) => event.data)
    assert.deepEqual(acks.map((ack) => ack.status), ['sent', 'failed'])
    assert.match(acks[1].error, /no WhatsApp account/)
  })

  it('looks numbers up in the unregistered list', async (t) => {
    const { engine } = await paired(t, { WA_SIM_UNREGISTERED: '5511900000077' })
    assert.deepEqual(await engine.lookup('5511900000077'), { exists: false, jid: null })
    assert.deepEqual(await engine.lookup('5511900000001'), { exists: true, jid: '5511900000001@s.whatsapp.net' })
  })

  it('emits the echo of a send before send() returns', async (t) => {
    const { engine, events } = await paired(t)
    const pending = engine.send({ to: '5511900000001@s.whatsapp.net', text: 'hi' })
    assert.equal(events.length, 1)
    const { id } = await pending
    assert.equal(events[0].name, 'message')
    assert.equal(events[0].data.gateway_message_id, id)
    assert.equal(events[0].data.from_me, true)
  })

  it('keeps no timer while idle', async (t) => {
    const { engine } = await paired(t)
    await engine.send({ to: '5511900000001@s.whatsapp.net', text: 'hi' })
    await new Promise((resolve) => setTimeout(resolve, 20))
    const handles = process.getActiveResourcesInfo().filter((name) => name === 'Timeout')
    assert.equal(handles.length, 0)
  })

  it('stops with a stopped disconnect and keeps the auth', async (t) => {
    const { engine, events, auth } = await paired(t)
    await engine.stop()
    assert.deepEqual(events.map(({ name, data }) => ({ name, data })), [{ name: 'disconnected', data: { reason: 'stopped', willReconnect: false } }])
    assert.notEqual(await auth.get('sim-creds'), null)
  })

  it('logs out with the requested reason', async (t) => {
    const { engine, events } = await paired(t)
    await engine.logout()
    assert.equal(engine.state, 'logged_out')
    assert.deepEqual(events.map(({ name, data }) => ({ name, data })), [{ name: 'logged_out', data: { reason: 'requested' } }])
  })
})
