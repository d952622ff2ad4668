// Test helpers: temporary data dirs, signed requests, JSON escaped as Python
// writes it, a stand-in for Django's callback endpoint on 127.0.0.1, polling
// with a deadline, and the status times of folded message.status events.

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'

import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { createLogger } from '../src/logger.js'
import { sign, verify } from '../src/signing.js'

export const SECRET = 'test-secret-for-the-gateway'

// Port 9 (discard) normally has no listener, so callbacks fail fast with
// ECONNREFUSED when a test does not care about them.
export const UNREACHABLE_CALLBACK = 'http://127.0.0.1:9/api/settings/whatsapp/session/update'

// One code point outside the Basic Multilingual Plane: two UTF-16 units, four
// UTF-8 bytes, twelve bytes once escaped.
export const EMOJI = '\u{1F600}'

/** JSON with every non-ASCII UTF-16 unit escaped, as Python's json.dumps writes it. */
export function asciiJson (value) {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

export async function makeDataDir (t) {
  const dir = await mkdtemp(join(tmpdir(), 'wa-gateway-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export function testEnv (dataDir, env = {}) {
  return {
    WA_DATA_DIR: dataDir,
    WA_GATEWAY_SECRET: SECRET,
    WA_CALLBACK_URL: UNREACHABLE_CALLBACK,
    WA_CALLBACK_BACKOFF_MS: '20,200',
    WA_SIM_ACK_DELAYS_MS: '0,0,0',
    WA_SHUTDOWN_TIMEOUT_MS: '500',
    LOG_LEVEL: 'silent',
    ...env
  }
}

/** Creates a pino destination that keeps every line as a parsed object. */
export function logSink () {
  const lines = []
  const stream = new Writable({
    write (chunk, encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line) lines.push(JSON.parse(line))
      }
      done()
    }
  })
  return { stream, lines, text: () => lines.map((line) => JSON.stringify(line)).join('\n') }
}

/**
 * Builds an app on `dataDir` and closes it after the test. Returns the app,
 * with the gateway internals on `app.gateway`.
 */
export async function buildTestApp (t, { dataDir, env = {}, logSink: sink, ...options } = {}) {
  const dir = dataDir ?? await makeDataDir(t)
  const config = loadConfig(testEnv(dir, env))
  const logger = sink
    ? createLogger({ level: 'debug', destination: sink.stream })
    : createLogger({ level: 'silent' })
  const app = await buildApp(config, { logger, ...options })
  t.after(() => app.close())
  await app.ready()
  return app
}

export function signature ({ method, path, body = '', secret = SECRET, timestamp }) {
  const t = timestamp ?? Math.floor(Date.now() / 1000)
  return sign({ secret, timestamp: t, method, path, body })
}

/** app.inject() with a valid signature unless `headers` overrides it. */
export function call (app, method, url, payload, { secret, headers = {}, timestamp } = {}) {
  const body = payload === undefined ? '' : (typeof payload === 'string' ? payload : JSON.stringify(payload))
  const signed = {
    'x-wa-signature': signature({ method, path: url, body, secret, timestamp })
  }
  if (payload !== undefined) signed['content-type'] = 'application/json'
  return app.inject({ method, url, payload: body || undefined, headers: { ...signed, ...headers } })
}

export function post (app, url, payload, options) {
  return call(app, 'POST', url, payload, options)
}

export function get (app, url, options) {
  return call(app, 'GET', url, undefined, options)
}

/** Polls `check` until it returns a truthy value, or fails after `timeout` ms. */
export async function waitFor (check, { timeout = 5000, interval = 10, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeout} ms waiting for ${message}`)
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}

/**
 * Maps each status that one message's `message.status` events report to the
 * time it happened: the event's own status and `timestamp`, and each entry
 * of its `earlier` map. Keys are in the order the events report them, so
 * they show the order Django learns the statuses in. A status reported
 * twice fails the test.
 */
export function statusTimes (events) {
  const times = {}
  for (const { data } of events) {
    const reported = [...Object.entries(data.earlier ?? {}), [data.status, data.timestamp]]
    for (const [status, time] of reported) {
      assert.equal(times[status], undefined, `${status} is reported twice`)
      times[status] = time
    }
  }
  return times
}

/**
 * A stand-in for Django's callback endpoint. It checks each batch's
 * signature, records the batches, and responds with `respond(batch, index)`
 * (default 200). `events` lists accepted events once per event_id, as
 * Django's unique constraint would.
 */
export async function startFakeDjango (t, { respond, secret = SECRET } = {}) {
  const fake = {
    batches: [],
    accepted: [],
    seen: new Set(),
    respond: respond ?? (() => 200),
    signatureFailures: 0,
    get events () {
      return this.accepted
    },
    eventsOf (userId) {
      return this.accepted.filter((event) => event.user_id === userId)
    },
    typesOf (userId) {
      return this.eventsOf(userId).map((event) => event.type)
    }
  }

  const server = createServer((request, response) => {
    const chunks = []
    request.on('data', (chunk) => chunks.push(chunk))
    request.on('end', () => {
      const body = Buffer.concat(chunks)
      try {
        verify({
          header: request.headers['x-wa-signature'],
          secrets: [secret],
          method: request.method,
          path: request.url,
          body,
          now: Math.floor(Date.now() / 1000)
        })
      } catch {
        fake.signatureFailures += 1
        response.writeHead(401).end('{"code":"bad_signature"}')
        return
      }

      const batch = JSON.parse(body.toString('utf8'))
      const index = fake.batches.length
      fake.batches.push(batch.events)
      const answer = fake.respond(batch.events, index)
      const status = typeof answer === 'number' ? answer : answer.status
      if (status >= 200 && status < 300) {
        for (const event of batch.events) {
          if (fake.seen.has(event.event_id)) continue
          fake.seen.add(event.event_id)
          fake.accepted.push(event)
        }
      }
      response.writeHead(status, { 'content-type': 'application/json', ...(answer.headers ?? {}) })
      response.end(JSON.stringify({ accepted: batch.events.length }))
    })
  })

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  fake.port = server.address().port
  fake.url = `http://127.0.0.1:${fake.port}/api/settings/whatsapp/session/update`
  fake.close = () => new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
  t.after(() => fake.close())
  return fake
}
