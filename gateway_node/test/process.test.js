// Tests that run `node src/server.js` as a child process, to check what only
// a real process shows: SIGKILL, SIGTERM and exit codes.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

import Database from 'better-sqlite3'

import { SECRET, makeDataDir, signature, startFakeDjango, statusTimes, testEnv, waitFor } from './helpers.js'

const SERVER = fileURLToPath(new URL('../src/server.js', import.meta.url))

async function freePort () {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Spawns the gateway and resolves once it listens; kills it after the test. */
async function spawnGateway (t, env) {
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH, ...env, PORT: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  let output = ''
  child.stderr.on('data', (chunk) => { output += chunk })
  const address = await new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      output += chunk
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match) resolve(match[1])
    })
    child.on('exit', (code) => reject(new Error(`gateway exited with ${code} before listening:\n${output}`)))
  })

  const call = async (method, path, payload) => {
    const body = payload === undefined ? '' : JSON.stringify(payload)
    const headers = { 'x-wa-signature': signature({ method, path, body }) }
    if (body) headers['content-type'] = 'application/json'
    const response = await fetch(address + path, { method, headers, body: body || undefined })
    return { status: response.status, body: await response.json() }
  }
  return { child, address, call, output: () => output }
}

function outboxEvents (dataDir) {
  const db = new Database(join(dataDir, 'gateway.db'), { readonly: true })
  try {
    return db.prepare('SELECT event_id, seq, type, data FROM outbox ORDER BY seq').all()
      .map((row) => ({ ...row, data: JSON.parse(row.data) }))
  } finally {
    db.close()
  }
}

async function exitOf (child) {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode }
  const [code, signal] = await once(child, 'exit')
  return { code, signal }
}

describe('gateway process', () => {
  it('loses no event when killed while Django is down', async (t) => {
    const dataDir = await makeDataDir(t)
    const djangoPort = await freePort()
    const callbackUrl = `http://127.0.0.1:${djangoPort}/api/settings/whatsapp/session/update`
    const env = testEnv(dataDir, { WA_CALLBACK_URL: callbackUrl, WA_CALLBACK_BACKOFF_MS: '50,200' })

    const first = await spawnGateway(t, env)
    await first.call('POST', '/start', { user_id: 1 })
    await first.call('POST', '/sim/scan', { user_id: 1, phone: '+5511900000009' })
    await first.call('POST', '/start', { user_id: 2 })
    for (let index = 0; index < 3; index += 1) {
      const sent = await first.call('POST', '/send', { user_id: 1, message_id: `m${index}`, to: '+5511900000001', text: `hello ${index}` })
      assert.equal(sent.status, 202)
    }
    await first.call('POST', '/sim/inbound', { user_id: 1, from: '+5511900000001', text: 'hi back' })

    // session.qr x2, session.connected and one inbound message, plus each
    // send's sent, delivered and read receipts. Receipts that wait in the
    // outbox together are folded, so a send has one to three events.
    const recorded = await waitFor(() => {
      const events = outboxEvents(dataDir)
      const others = events.filter((event) => event.type !== 'message.status')
      const receiptsOf = (messageId) => events.filter((event) => event.type === 'message.status' && event.data.message_id === messageId)
      const complete = ['m0', 'm1', 'm2'].every((messageId) => Object.keys(statusTimes(receiptsOf(messageId))).length === 3)
      return others.length === 4 && complete && events
    }, { message: 'every event and receipt in the outbox' })

    first.child.kill('SIGKILL')
    assert.equal((await exitOf(first.child)).signal, 'SIGKILL')

    const deliveries = new Map()
    const django = createServer((request, response) => {
      let body = ''
      request.on('data', (chunk) => { body += chunk })
      request.on('end', () => {
        for (const event of JSON.parse(body).events) {
          deliveries.set(event.event_id, [...(deliveries.get(event.event_id) ?? []), event])
        }
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      })
    })
    await new Promise((resolve) => django.listen(djangoPort, '127.0.0.1', resolve))
    t.after(() => {
      django.closeAllConnections()
      return new Promise((resolve) => django.close(resolve))
    })

    const second = await spawnGateway(t, env)
    await waitFor(() => recorded.every((event) => deliveries.has(event.event_id)), { message: 'every event of the first run', timeout: 10000 })
    for (const event of recorded) {
      assert.equal(deliveries.get(event.event_id).length, 1, `${event.type} ${event.event_id} delivered once`)
    }

    // Django receives each user's events in seq order.
    const arrived = [...deliveries.values()].map((copies) => copies[0])
    for (const userId of [1, 2]) {
      const seqs = arrived.filter((event) => event.user_id === userId).map((event) => event.seq)
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b))
    }

    // The paired session came back without a new QR.
    const status = await waitFor(async () => {
      const response = await second.call('GET', '/status?user_id=1')
      return response.body.state === 'connected' && response
    })
    assert.equal(status.body.phone, '+5511900000009')
  })

  it('exits 0 on SIGTERM after flushing the outbox', async (t) => {
    const dataDir = await makeDataDir(t)
    const django = await startFakeDjango(t)
    const first = await spawnGateway(t, testEnv(dataDir, { WA_CALLBACK_URL: django.url }))
    await first.call('POST', '/start', { user_id: 1 })
    await first.call('POST', '/sim/scan', { user_id: 1, phone: '+5511900000009' })

    first.child.kill('SIGTERM')
    const { code } = await exitOf(first.child)
    assert.equal(code, 0)
    assert.deepEqual(django.typesOf(1), ['session.qr', 'session.connected', 'session.disconnected'])
    // The next boot restores the client, so the event reports a reconnect.
    assert.deepEqual(django.eventsOf(1).at(-1).data, { reason: 'restart', will_reconnect: true })
    assert.equal(outboxEvents(dataDir).length, 0)
    assert.match(first.output(), /gateway stopped/)

    // The client was stopped, not logged out: a restart restores it.
    const second = await spawnGateway(t, testEnv(dataDir, { WA_CALLBACK_URL: django.url }))
    const status = await waitFor(async () => {
      const response = await second.call('GET', '/status?user_id=1')
      return response.body.state === 'connected' && response
    })
    assert.equal(status.status, 200)
  })

  it('exits 0 on SIGTERM in bounded time while Django is down', async (t) => {
    const dataDir = await makeDataDir(t)
    const env = testEnv(dataDir, { WA_SHUTDOWN_TIMEOUT_MS: '2000' })
    const gateway = await spawnGateway(t, env)
    await gateway.call('POST', '/start', { user_id: 1 })

    const started = Date.now()
    gateway.child.kill('SIGTERM')
    const { code } = await exitOf(gateway.child)
    assert.equal(code, 0)
    assert.ok(Date.now() - started < 4000)
    assert.ok(outboxEvents(dataDir).length >= 2, 'events stay pending for the next start')
  })

  it('exits 2 naming the variable when the configuration is invalid', async () => {
    const child = spawn(process.execPath, [SERVER], {
      env: { PATH: process.env.PATH, WA_GATEWAY_SECRET: SECRET, WA_MAX_SESSIONS: 'lots' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stderr = ''
    child.stderr.on('data', (chunk) => { stderr += chunk })
    const { code } = await exitOf(child)
    assert.equal(code, 2)
    assert.match(stderr, /WA_MAX_SESSIONS must be a whole number/)
  })
})
