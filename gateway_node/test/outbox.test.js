import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { describe, it } from 'node:test'

import { openDatabase } from '../src/database.js'
import { createLogger } from '../src/logger.js'
import { createMetrics } from '../src/metrics.js'
import { MAX_BATCH, Outbox } from '../src/outbox.js'
import { SECRET, logSink, makeDataDir, startFakeDjango, waitFor } from './helpers.js'

const silent = createLogger({ level: 'silent' })

// Only the path of this URL is signed, and `controlledFetch` requests never
// leave the process.
const STUB_CALLBACK_URL = 'http://127.0.0.1:9/api/settings/whatsapp/session/update'

async function makeOutbox (t, {
  url = STUB_CALLBACK_URL, dataDir, backoff = [20, 200], timeoutMs = 2000, concurrency = 4, start = true,
  fetch, logger = silent, clock, random, lingerMs = 0, metrics
} = {}) {
  const dir = dataDir ?? await makeDataDir(t)
  const db = openDatabase({ dataDir: dir })
  const outbox = new Outbox({
    db,
    callback: { url, timeoutMs, backoffFirstMs: backoff[0], backoffMaxMs: backoff[1], concurrency, lingerMs },
    secret: SECRET,
    logger,
    metrics,
    fetch,
    clock,
    random
  })
  t.after(async () => {
    await outbox.close()
    db.close()
  })
  if (start) outbox.start()
  return { outbox, db, dataDir: dir }
}

/**
 * Returns a fetch stand-in that records each request and leaves it pending
 * until the test calls `respond(status)` on it. An aborted request rejects,
 * as fetch does.
 */
function controlledFetch () {
  const requests = []
  const fetch = (url, init) => new Promise((resolve, reject) => {
    const request = {
      events: JSON.parse(init.body).events,
      respond: (status) => resolve(new Response('{}', { status }))
    }
    init.signal.addEventListener('abort', () => reject(init.signal.reason))
    requests.push(request)
  })
  return { fetch, requests }
}

/** Lists the user id of each run of consecutive events in a batch. */
function userRuns (events) {
  return events
    .map((event) => event.user_id)
    .filter((userId, index, userIds) => index === 0 || userIds[index - 1] !== userId)
}

function seqsOf (events) {
  return events.map((event) => event.seq)
}

function isSorted (numbers) {
  return numbers.every((value, index) => index === 0 || numbers[index - 1] < value)
}

async function freePort () {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('outbox ordering and batching', () => {
  it('posts one user\'s events in order, at most 100 per batch', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    for (let index = 0; index < 250; index += 1) outbox.append(1, 'message.received', { index })
    outbox.start()

    await waitFor(() => django.events.length === 250 && outbox.pendingCount() === 0, { message: '250 events' })
    assert.deepEqual(django.batches.map((batch) => batch.length), [100, 100, 50])
    assert.ok(django.batches.every((batch) => batch.length <= MAX_BATCH))
    assert.ok(isSorted(seqsOf(django.events)))
    assert.deepEqual(django.events.map((event) => event.data.index), [...Array(250).keys()])
    assert.equal(outbox.pendingCount(), 0)
  })

  it('keeps each user\'s order with several users', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    for (let index = 0; index < 300; index += 1) outbox.append(1 + (index % 3), 'message.received', { index })
    outbox.start()

    await waitFor(() => django.events.length === 300)
    for (const userId of [1, 2, 3]) {
      assert.ok(isSorted(seqsOf(django.eventsOf(userId))), `user ${userId}`)
      assert.equal(django.eventsOf(userId).length, 100)
    }
    assert.ok(django.batches.every((batch) => new Set(batch.map((event) => event.user_id)).size === 1))
  })

  it('gives seq numbers that keep growing across a restart', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox, db, dataDir } = await makeOutbox(t, { url: django.url })
    const first = outbox.append(1, 'session.qr', {})
    await waitFor(() => outbox.pendingCount() === 0)
    await outbox.close()
    db.close()

    const reopened = await makeOutbox(t, { url: django.url, dataDir })
    const second = reopened.outbox.append(1, 'session.qr', {})
    assert.ok(second.seq > first.seq)
  })

  it('posts the exact event shape', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await makeOutbox(t, { url: django.url })
    const event = outbox.append(42, 'session.connected', { jid: '5511900000009@s.whatsapp.net', phone: '+5511900000009', push_name: 'Olá 👋', lid: null })
    await waitFor(() => django.events.length === 1)
    assert.deepEqual(django.events[0], event)
    assert.deepEqual(Object.keys(django.events[0]), ['event_id', 'seq', 'type', 'user_id', 'occurred_at', 'data'])
  })
})

describe('outbox linger between requests', () => {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

  // An outbox whose first request, of one event, has gone out. With
  // `accepted`, Django has accepted it and nothing is pending.
  async function afterFirstRequest (t, { lingerMs, clock, accepted = false }) {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch, lingerMs, clock })
    outbox.append(1, 'message.received', { index: 0 })
    await waitFor(() => callbacks.requests.length === 1)
    if (accepted) {
      callbacks.requests[0].respond(200)
      await waitFor(() => outbox.pendingCount() === 0)
    }
    return { callbacks, outbox }
  }

  it('posts an event at once when no request went out lately', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch, lingerMs: 60000 })

    outbox.append(1, 'message.received', { index: 0 })

    await waitFor(() => callbacks.requests.length === 1)
  })

  it('holds a second request until the linger ends', async (t) => {
    const { callbacks, outbox } = await afterFirstRequest(t, { lingerMs: 400 })
    const firstAt = Date.now()

    outbox.append(2, 'message.received', { index: 1 })
    outbox.append(3, 'message.received', { index: 2 })
    await sleep(100)
    assert.equal(callbacks.requests.length, 1)

    await waitFor(() => callbacks.requests.length === 2)
    assert.ok(Date.now() - firstAt >= 390)
    assert.deepEqual(userRuns(callbacks.requests[1].events), [2, 3])
  })

  it('holds the next request after a quick answer until the linger ends', async (t) => {
    const { callbacks, outbox } = await afterFirstRequest(t, { lingerMs: 400, accepted: true })

    outbox.append(1, 'message.received', { index: 1 })
    await sleep(100)
    assert.equal(callbacks.requests.length, 1)
    await waitFor(() => callbacks.requests.length === 2)
  })

  it('posts a full request at once during the linger', async (t) => {
    const { callbacks, outbox } = await afterFirstRequest(t, { lingerMs: 60000 })

    for (let index = 0; index < MAX_BATCH; index += 1) {
      outbox.append(2 + (index % 5), 'message.received', { index })
    }

    await waitFor(() => callbacks.requests.length === 2)
    assert.equal(callbacks.requests[1].events.length, MAX_BATCH)
  })

  it('lingers no longer after the clock steps back', async (t) => {
    let offsetMs = 0
    const clock = () => Date.now() + offsetMs
    const { callbacks, outbox } = await afterFirstRequest(t, { lingerMs: 50, clock, accepted: true })

    // The system clock is corrected one hour back, as NTP may do.
    offsetMs = -3600 * 1000
    outbox.append(1, 'message.received', { index: 1 })

    await waitFor(() => callbacks.requests.length === 2, { timeout: 1000 })
  })

  it('posts a full request at once after a delivery failed to commit', async (t) => {
    const callbacks = controlledFetch()
    const db = openDatabase({ dataDir: await makeDataDir(t) })
    let deletes = 0
    // The second DELETE of delivered events fails, as on a disk I/O error.
    const faultyDb = new Proxy(db, {
      get (target, property) {
        const value = Reflect.get(target, property)
        if (property !== 'prepare') return typeof value === 'function' ? value.bind(target) : value
        return (sql) => {
          const statement = target.prepare(sql)
          if (!sql.startsWith('DELETE FROM outbox WHERE')) return statement
          return {
            run: (...args) => {
              deletes += 1
              if (deletes === 2) throw new Error('disk I/O error')
              return statement.run(...args)
            }
          }
        }
      }
    })
    const outbox = new Outbox({
      db: faultyDb,
      callback: { url: STUB_CALLBACK_URL, timeoutMs: 2000, backoffFirstMs: 20, backoffMaxMs: 200, concurrency: 4, lingerMs: 60000 },
      secret: SECRET,
      logger: silent,
      fetch: callbacks.fetch
    })
    t.after(async () => {
      await outbox.close()
      db.close()
    })
    outbox.append(1, 'message.received', { index: 0 })
    outbox.append(2, 'message.received', { index: 1 })
    outbox.start()
    await waitFor(() => callbacks.requests.length === 1)
    callbacks.requests[0].respond(200)
    await waitFor(() => deletes === 2)
    assert.equal(outbox.pendingCount(), 2)

    for (let index = 0; index < MAX_BATCH - 2; index += 1) {
      outbox.append(3 + (index % 5), 'message.received', { index })
    }

    await waitFor(() => callbacks.requests.length === 2, { timeout: 1000 })
  })

  it('posts what waits at once when draining', async (t) => {
    const { callbacks, outbox } = await afterFirstRequest(t, { lingerMs: 60000, accepted: true })
    outbox.append(2, 'message.received', { index: 1 })

    const drained = outbox.drain(2000)
    await waitFor(() => callbacks.requests.length === 2)
    callbacks.requests[1].respond(200)
    assert.equal(await drained, 0)
  })
})

describe('outbox requests with several users', () => {
  it('posts several users\' events in one request', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    for (let index = 0; index < 12; index += 1) outbox.append(1 + (index % 4), 'message.received', { index })
    outbox.start()

    await waitFor(() => outbox.pendingCount() === 0, { message: 'all events deleted after the 2xx' })
    assert.equal(django.batches.length, 1)
    assert.deepEqual(userRuns(django.batches[0]), [1, 2, 3, 4])
    for (const userId of [1, 2, 3, 4]) {
      const seqs = seqsOf(django.eventsOf(userId))
      assert.equal(seqs.length, 3, `user ${userId}`)
      assert.ok(isSorted(seqs), `user ${userId}`)
    }
  })

  it('fills a request up to 100 events', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    for (const userId of [1, 2, 3]) {
      for (let index = 0; index < 60; index += 1) outbox.append(userId, 'message.received', { index })
    }
    outbox.start()

    await waitFor(() => outbox.pendingCount() === 0)
    assert.ok(django.batches.every((batch) => batch.length <= MAX_BATCH))
    // User 1 is first in turn, and user 2 fills the rest of that request.
    const first = django.batches.find((batch) => batch[0].user_id === 1)
    assert.deepEqual(first.map((event) => event.user_id), [...Array(60).fill(1), ...Array(40).fill(2)])
    assert.equal(django.batches.length, 3)
    for (const userId of [1, 2, 3]) {
      assert.deepEqual(django.eventsOf(userId).map((event) => event.data.index), [...Array(60).keys()], `user ${userId}`)
    }
  })

  it('takes no more than a lane\'s limit into a mixed request', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch, concurrency: 1, start: false })
    for (let index = 0; index < 20; index += 1) outbox.append(1, 'message.received', { index })
    outbox.start()

    // Two 413s halve user 1's limit to 10 events, then to 5.
    await waitFor(() => callbacks.requests.length === 1)
    callbacks.requests[0].respond(413)
    await waitFor(() => callbacks.requests.length === 2)
    callbacks.requests[1].respond(413)
    await waitFor(() => callbacks.requests.length === 3)
    assert.equal(callbacks.requests[2].events.length, 5)
    for (let index = 0; index < 3; index += 1) outbox.append(2, 'message.received', { index })
    // A 2xx doubles the limit back to 10.
    callbacks.requests[2].respond(200)

    await waitFor(() => callbacks.requests.length === 4)
    assert.deepEqual(callbacks.requests[3].events.map((event) => event.user_id), [...Array(10).fill(1), 2, 2, 2])
  })

  it('keeps a user with a request in flight out of other requests', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch })
    outbox.append(1, 'message.received', { n: 1 })
    await waitFor(() => callbacks.requests.length === 1)
    outbox.append(1, 'message.received', { n: 2 })
    outbox.append(2, 'message.received', { n: 3 })

    await waitFor(() => callbacks.requests.length === 2)
    assert.deepEqual(callbacks.requests[1].events.map((event) => event.data.n), [3])
    callbacks.requests[1].respond(200)
    callbacks.requests[0].respond(200)
    await waitFor(() => callbacks.requests.length === 3)
    assert.deepEqual(callbacks.requests[2].events.map((event) => event.data.n), [2])
  })

  it('dead-letters only the bad event of a rejected mixed request', async (t) => {
    const django = await startFakeDjango(t, {
      respond: (batch) => (batch.some((event) => event.data.bad) ? 400 : 200)
    })
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    outbox.append(1, 'message.received', { n: 1 })
    const bad = outbox.append(1, 'message.received', { bad: true })
    outbox.append(1, 'message.received', { n: 3 })
    outbox.append(2, 'message.received', { n: 4 })
    outbox.append(3, 'message.received', { n: 5 })
    outbox.start()

    await waitFor(() => outbox.pendingCount() === 0)
    assert.deepEqual(userRuns(django.batches[0]), [1, 2, 3])
    assert.deepEqual(outbox.deadLetterSummary(), { count: 1, latest_event_ids: [bad.event_id] })
    assert.deepEqual(django.eventsOf(1).map((event) => event.data.n), [1, 3])
    assert.deepEqual(django.eventsOf(2).map((event) => event.data.n), [4])
    assert.deepEqual(django.eventsOf(3).map((event) => event.data.n), [5])
    // After the rejection every request carries one user's events.
    assert.ok(django.batches.slice(1).every((batch) => userRuns(batch).length === 1))
  })

  it('retries each user alone after a mixed 500', async (t) => {
    let now = Date.now()
    const sink = logSink()
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, {
      fetch: callbacks.fetch,
      clock: () => now,
      random: () => 0,
      backoff: [100, 1000],
      logger: createLogger({ level: 'debug', destination: sink.stream }),
      start: false
    })
    for (const userId of [1, 2, 3]) outbox.append(userId, 'message.received', {})
    outbox.start()
    await waitFor(() => callbacks.requests.length === 1)
    callbacks.requests[0].respond(500)
    await waitFor(() => sink.lines.some((line) => line.msg === 'callback delivery failed; will retry'))

    // The clock does not advance, so no lane's backoff runs out.
    await new Promise((resolve) => setTimeout(resolve, 150))
    assert.equal(callbacks.requests.length, 1)

    // All three retries are due at once, and each user's goes alone.
    now += 1000
    await waitFor(() => callbacks.requests.length === 4)
    assert.deepEqual(callbacks.requests.slice(1).map((request) => userRuns(request.events)), [[1], [2], [3]])
  })

  it('probes with several users after an endpoint failure', async (t) => {
    const django = await startFakeDjango(t, { respond: (batch, index) => (index === 0 ? 503 : 200) })
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    for (const userId of [1, 2, 3]) outbox.append(userId, 'message.received', {})
    outbox.start()

    await waitFor(() => outbox.pendingCount() === 0)
    assert.equal(django.batches.length, 2)
    assert.deepEqual(userRuns(django.batches[0]), [1, 2, 3])
    assert.deepEqual(userRuns(django.batches[1]), [1, 2, 3])
  })

  it('starts no other request while the probe is in flight', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch, start: false })
    for (const userId of [1, 2]) outbox.append(userId, 'message.received', {})
    outbox.start()
    await waitFor(() => callbacks.requests.length === 1)
    callbacks.requests[0].respond(503)
    await waitFor(() => callbacks.requests.length === 2)

    outbox.append(3, 'message.received', {})
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(callbacks.requests.length, 2)
    callbacks.requests[1].respond(200)
    await waitFor(() => callbacks.requests.length === 3)
    assert.deepEqual(userRuns(callbacks.requests[2].events), [3])
  })

  it('keeps a lane that backs off out of other users\' requests', async (t) => {
    const sink = logSink()
    const logger = createLogger({ level: 'debug', destination: sink.stream })
    const django = await startFakeDjango(t, {
      respond: (batch) => (batch.some((event) => event.user_id === 1) ? 500 : 200)
    })
    const { outbox } = await makeOutbox(t, { url: django.url, backoff: [2000, 5000], logger })
    outbox.append(1, 'message.received', {})
    await waitFor(() => sink.lines.some((line) => line.msg === 'callback delivery failed; will retry'))
    outbox.append(2, 'message.received', {})

    // The fake Django records the events before it responds, and the
    // outbox deletes them once the response arrives.
    await waitFor(() => django.eventsOf(2).length === 1 && outbox.pendingCount() === 1)
    assert.deepEqual(userRuns(django.batches[1]), [2])
    assert.equal(django.batches.length, 2)
  })

  it('logs user ids and the event count, not event data', async (t) => {
    const sink = logSink()
    const logger = createLogger({ level: 'debug', destination: sink.stream })
    const django = await startFakeDjango(t, { respond: (batch, index) => (index === 0 ? 500 : 200) })
    const { outbox } = await makeOutbox(t, { url: django.url, logger, start: false })
    outbox.append(1, 'message.received', { caption: 'private caption' })
    outbox.append(2, 'message.received', { caption: 'private caption' })
    outbox.append(2, 'message.received', { caption: 'private caption' })
    outbox.start()

    await waitFor(() => outbox.pendingCount() === 0)
    const failed = sink.lines.find((line) => line.msg === 'callback delivery failed; will retry')
    assert.deepEqual(failed.userIds, [1, 2])
    assert.equal(failed.events, 3)
    assert.equal(failed.scope, 'each user')
    assert.ok(!sink.text().includes('private caption'))
  })

  it('keeps the events of an aborted mixed request pending on close', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch, start: false })
    for (const userId of [1, 2]) outbox.append(userId, 'message.received', {})
    outbox.start()
    await waitFor(() => callbacks.requests.length === 1)
    assert.deepEqual(userRuns(callbacks.requests[0].events), [1, 2])

    await outbox.close()
    assert.equal(outbox.pendingCount(), 2)
    assert.equal(outbox.deadLetterCount(), 0)
  })

  it('keeps the events of a mixed request pending when drain ends', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch, start: false })
    for (const userId of [1, 2]) outbox.append(userId, 'message.received', {})

    const pending = await outbox.drain(200)
    assert.equal(pending, 2)
    assert.equal(callbacks.requests.length, 1)
    assert.deepEqual(userRuns(callbacks.requests[0].events), [1, 2])
    assert.equal(outbox.deadLetterCount(), 0)
  })
})

describe('outbox retries', () => {
  it('retries a 500 with backoff until Django accepts', async (t) => {
    const django = await startFakeDjango(t, { respond: (batch, index) => (index < 2 ? 500 : 200) })
    const { outbox } = await makeOutbox(t, { url: django.url, backoff: [50, 1000] })
    const started = Date.now()
    outbox.append(1, 'session.qr', { n: 1 })
    outbox.append(1, 'session.qr', { n: 2 })

    await waitFor(() => django.events.length === 2)
    assert.equal(django.batches.length, 3)
    // Two backoff steps of at least half of 50 ms and 100 ms.
    assert.ok(Date.now() - started >= 75)
    assert.deepEqual(django.events.map((event) => event.data.n), [1, 2])
  })

  for (const status of [401, 403, 408, 429, 502, 503, 504]) {
    it(`retries a ${status}`, async (t) => {
      const django = await startFakeDjango(t, { respond: (batch, index) => (index === 0 ? status : 200) })
      const { outbox } = await makeOutbox(t, { url: django.url })
      outbox.append(1, 'session.qr', {})
      await waitFor(() => django.events.length === 1)
      assert.equal(django.batches.length, 2)
      assert.equal(outbox.deadLetterCount(), 0)
    })
  }

  it('waits at least Retry-After on a 429', async (t) => {
    const django = await startFakeDjango(t, {
      respond: (batch, index) => (index === 0 ? { status: 429, headers: { 'retry-after': '1' } } : 200)
    })
    const { outbox } = await makeOutbox(t, { url: django.url, backoff: [10, 5000] })
    const started = Date.now()
    outbox.append(1, 'session.qr', {})
    await waitFor(() => django.events.length === 1, { timeout: 4000 })
    assert.ok(Date.now() - started >= 1000)
  })

  it('retries while Django refuses connections, then delivers', async (t) => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}/api/settings/whatsapp/session/update`
    const { outbox } = await makeOutbox(t, { url, backoff: [20, 100] })
    outbox.append(1, 'session.qr', { n: 1 })
    outbox.append(2, 'session.qr', { n: 2 })
    await new Promise((resolve) => setTimeout(resolve, 150))
    assert.equal(outbox.pendingCount(), 2)

    const received = []
    const server = createServer((request, response) => {
      let body = ''
      request.on('data', (chunk) => { body += chunk })
      request.on('end', () => {
        received.push(...JSON.parse(body).events)
        response.writeHead(200).end('{}')
      })
    })
    await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve))
    t.after(() => new Promise((resolve) => server.close(resolve)))

    await waitFor(() => outbox.pendingCount() === 0, { message: 'delivery after the outage' })
    assert.deepEqual(received.map((event) => event.data.n).sort(), [1, 2])
  })

  it('retries a request that times out', async (t) => {
    let calls = 0
    const server = createServer((request, response) => {
      calls += 1
      request.resume()
      if (calls === 1) return
      request.on('end', () => response.writeHead(200).end('{}'))
    })
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(resolve))
    })
    const url = `http://127.0.0.1:${server.address().port}/callback`
    const { outbox } = await makeOutbox(t, { url, timeoutMs: 200 })
    outbox.append(1, 'session.qr', {})
    await waitFor(() => outbox.pendingCount() === 0)
    assert.equal(calls, 2)
  })

  it('does not let one user\'s failing events hold up another user', async (t) => {
    const django = await startFakeDjango(t, {
      respond: (batch) => (batch[0].user_id === 1 ? 500 : 200)
    })
    const { outbox } = await makeOutbox(t, { url: django.url, backoff: [1000, 5000] })
    outbox.append(1, 'message.received', {})
    outbox.append(2, 'message.received', {})
    outbox.append(2, 'message.received', {})

    // Django records a batch before the outbox reads its response, so wait
    // for the outbox too. User 1 fails on every attempt, so only user 2's
    // events ever leave the outbox.
    await waitFor(() => django.eventsOf(2).length === 2 && outbox.pendingCount() === 1)
    assert.equal(django.eventsOf(1).length, 0)
  })

  it('resends events left pending by a previous run', async (t) => {
    const dataDir = await makeDataDir(t)
    const first = await makeOutbox(t, { url: 'http://127.0.0.1:9/callback', dataDir, start: false })
    const event = first.outbox.append(1, 'session.qr', {})
    await first.outbox.close()
    first.db.close()

    const django = await startFakeDjango(t)
    await makeOutbox(t, { url: django.url, dataDir })
    await waitFor(() => django.events.length === 1)
    assert.equal(django.events[0].event_id, event.event_id)
  })
})

describe('outbox rejections', () => {
  it('dead-letters an event Django rejects with 400 and goes on', async (t) => {
    const django = await startFakeDjango(t, {
      respond: (batch) => (batch.some((event) => event.data.bad) ? 400 : 200)
    })
    const { outbox, db } = await makeOutbox(t, { url: django.url, start: false })
    const bad = outbox.append(1, 'message.received', { bad: true })
    outbox.append(1, 'message.received', { n: 2 })
    outbox.start()

    await waitFor(() => django.events.length === 1 && outbox.pendingCount() === 0)
    assert.equal(django.events[0].data.n, 2)
    assert.deepEqual(outbox.deadLetterSummary(), { count: 1, latest_event_ids: [bad.event_id] })
    const row = db.prepare('SELECT * FROM dead_letters').get()
    assert.equal(row.http_status, 400)
    assert.equal(JSON.parse(row.data).bad, true)
  })

  it('splits a batch on 413 until each part fits', async (t) => {
    const django = await startFakeDjango(t, { respond: (batch) => (batch.length > 10 ? 413 : 200) })
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    for (let index = 0; index < 40; index += 1) outbox.append(1, 'message.received', { index })
    outbox.start()

    await waitFor(() => django.events.length === 40)
    assert.deepEqual(django.events.map((event) => event.data.index), [...Array(40).keys()])
    assert.equal(outbox.deadLetterCount(), 0)
  })

  it('dead-letters a single event that is still too large', async (t) => {
    const django = await startFakeDjango(t, {
      respond: (batch) => (batch.some((event) => event.data.huge) ? 413 : 200)
    })
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    outbox.append(1, 'message.received', { n: 1 })
    const huge = outbox.append(1, 'message.received', { huge: true })
    outbox.append(1, 'message.received', { n: 3 })
    outbox.start()

    await waitFor(() => outbox.pendingCount() === 0)
    assert.deepEqual(django.events.map((event) => event.data.n), [1, 3])
    assert.deepEqual(outbox.deadLetterSummary().latest_event_ids, [huge.event_id])
  })
})

describe('outbox drain', () => {
  it('delivers what Django accepts before the deadline', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    for (let index = 0; index < 5; index += 1) outbox.append(index + 1, 'session.qr', {})
    const pending = await outbox.drain(2000)
    assert.equal(pending, 0)
    assert.equal(django.events.length, 5)
  })

  it('gives up at once when Django is down', async (t) => {
    const { outbox } = await makeOutbox(t, { url: 'http://127.0.0.1:9/callback', start: false })
    outbox.append(1, 'session.qr', {})
    const started = Date.now()
    const pending = await outbox.drain(5000)
    assert.equal(pending, 1)
    assert.ok(Date.now() - started < 1000)
  })
})

describe('outbox dead-letter requeue', () => {
  async function deadLettered (t, events) {
    let rejecting = true
    const django = await startFakeDjango(t, {
      respond: (batch) => (rejecting && batch.some((event) => event.data.bad) ? 400 : 200)
    })
    const { outbox } = await makeOutbox(t, { url: django.url, start: false })
    const appended = events.map(([userId, data]) => outbox.append(userId, 'message.received', data))
    outbox.start()
    const bad = appended.filter((event) => event.data.bad)
    await waitFor(() => outbox.deadLetterCount() === bad.length && outbox.pendingCount() === 0)
    rejecting = false
    return { django, outbox, bad }
  }

  it('posts every dead letter again with its event id', async (t) => {
    const { django, outbox, bad } = await deadLettered(t, [[1, { bad: true }], [2, { bad: true }]])

    assert.equal(outbox.requeueDeadLetters(), 2)

    await waitFor(() => django.events.length === 2)
    assert.deepEqual(
      django.events.map((event) => event.event_id).sort(),
      bad.map((event) => event.event_id).sort()
    )
    assert.equal(outbox.deadLetterCount(), 0)
  })

  it('requeues only the dead letters of one user', async (t) => {
    const { django, outbox, bad } = await deadLettered(t, [[1, { bad: true }], [2, { bad: true }]])

    assert.equal(outbox.requeueDeadLetters(2), 1)

    await waitFor(() => django.eventsOf(2).length === 1)
    assert.equal(django.eventsOf(2)[0].event_id, bad[1].event_id)
    assert.equal(outbox.deadLetterCount(), 1)
  })

  it('returns 0 when there is nothing to requeue', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await makeOutbox(t, { url: django.url })

    assert.equal(outbox.requeueDeadLetters(), 0)
  })
})

describe('outbox status folding', () => {
  const CHAT = '5511900000001@s.whatsapp.net'
  const T1 = '2026-01-31T12:00:01.000Z'
  const T2 = '2026-01-31T12:00:02.000Z'
  const T3 = '2026-01-31T12:00:03.000Z'
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

  /** Builds the data of a message.status event as the session manager does. */
  function receipt (status, { messageId = 'django-1', gatewayId = '3EB0000000000000000001', chatJid = CHAT, timestamp = null } = {}) {
    return { gateway_message_id: gatewayId, message_id: messageId, chat_jid: chatJid, status, error: null, timestamp }
  }

  function outboxRows (db) {
    return db.prepare('SELECT seq, event_id, user_id, type, occurred_at, data FROM outbox ORDER BY seq').all()
      .map((row) => ({ ...row, data: JSON.parse(row.data) }))
  }

  // An outbox that posts nothing, so every appended row stays pending and
  // foldable.
  function idleOutbox (t, options = {}) {
    return makeOutbox(t, { start: false, ...options })
  }

  it('folds three pending receipts into one read event', async (t) => {
    const { outbox, db } = await idleOutbox(t)

    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))
    outbox.append(1, 'message.status', receipt('read', { timestamp: T3 }))

    const rows = outboxRows(db)
    assert.equal(rows.length, 1)
    assert.deepEqual(rows[0].data, { ...receipt('read', { timestamp: T3 }), earlier: { sent: T1, delivered: T2 } })
  })

  it('returns the folded event as it is stored', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))

    const event = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    const [row] = outboxRows(db)
    assert.deepEqual(event, { event_id: row.event_id, seq: row.seq, type: 'message.status', user_id: 1, occurred_at: row.occurred_at, data: row.data })
  })

  it('posts the folded event once to Django', async (t) => {
    const django = await startFakeDjango(t)
    const { outbox } = await idleOutbox(t, { url: django.url })
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))
    const folded = outbox.append(1, 'message.status', receipt('read', { timestamp: T3 }))

    outbox.start()

    await waitFor(() => outbox.pendingCount() === 0)
    assert.deepEqual(django.events, [folded])
  })

  it('folds a late lower receipt under the higher one', async (t) => {
    const { outbox } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    const event = outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))

    assert.deepEqual(event.data, { ...receipt('delivered', { timestamp: T2 }), earlier: { sent: T1 } })
  })

  it('appends the folded event as a new row', async (t) => {
    const now = Date.parse('2026-01-31T12:00:10.000Z')
    let clockMs = now
    const { outbox, db } = await idleOutbox(t, { clock: () => clockMs })
    const sent = outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    const received = outbox.append(1, 'message.received', { gateway_message_id: '3A0000000000000001' })
    clockMs += 5000

    const folded = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    assert.notEqual(folded.event_id, sent.event_id)
    assert.ok(folded.seq > received.seq)
    assert.equal(folded.occurred_at, new Date(now + 5000).toISOString())
    assert.deepEqual(outboxRows(db).map((row) => row.event_id), [received.event_id, folded.event_id])
  })

  it('keeps a receipt apart from one in flight', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch })
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    await waitFor(() => callbacks.requests.length === 1)

    const event = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    assert.deepEqual(event.data, receipt('delivered', { timestamp: T2 }))
    assert.equal(outbox.pendingCount(), 2)
    assert.deepEqual(callbacks.requests[0].events.map((item) => item.data.status), ['sent'])
  })

  it('keeps a receipt apart from a failed request', async (t) => {
    const sink = logSink()
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, {
      fetch: callbacks.fetch,
      backoff: [60000, 60000],
      logger: createLogger({ level: 'debug', destination: sink.stream })
    })
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    await waitFor(() => callbacks.requests.length === 1)
    callbacks.requests[0].respond(500)
    await waitFor(() => sink.lines.some((line) => line.msg === 'callback delivery failed; will retry'))

    const event = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    assert.equal(event.data.earlier, undefined)
    assert.equal(outbox.pendingCount(), 2)
  })

  it('folds receipts of a lane that backs off', async (t) => {
    const sink = logSink()
    const callbacks = controlledFetch()
    const { outbox, db } = await makeOutbox(t, {
      fetch: callbacks.fetch,
      backoff: [60000, 60000],
      logger: createLogger({ level: 'debug', destination: sink.stream })
    })
    outbox.append(1, 'message.received', { gateway_message_id: '3A0000000000000001' })
    await waitFor(() => callbacks.requests.length === 1)
    callbacks.requests[0].respond(500)
    await waitFor(() => sink.lines.some((line) => line.msg === 'callback delivery failed; will retry'))
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))

    const event = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    assert.deepEqual(event.data.earlier, { sent: T1 })
    assert.deepEqual(outboxRows(db).map((row) => row.type), ['message.received', 'message.status'])
  })

  it('never folds a failed receipt', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))

    const failed = outbox.append(1, 'message.status', { ...receipt('failed', { timestamp: T2 }), error: 'The recipient has no WhatsApp account.' })

    assert.equal(failed.data.earlier, undefined)
    assert.deepEqual(outboxRows(db).map((row) => row.data.status), ['sent', 'failed'])
  })

  it('never folds a receipt into a failed one', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('failed', { timestamp: T1 }))

    const sent = outbox.append(1, 'message.status', receipt('sent', { timestamp: T2 }))

    assert.equal(sent.data.earlier, undefined)
    assert.deepEqual(outboxRows(db).map((row) => row.data.status), ['failed', 'sent'])
  })

  it('keeps receipts of different messages apart', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { messageId: 'django-1', gatewayId: '3EB0000000000000000001' }))

    outbox.append(1, 'message.status', receipt('delivered', { messageId: 'django-2', gatewayId: '3EB0000000000000000002' }))

    assert.equal(outboxRows(db).length, 2)
  })

  it('keeps receipts apart whose message ids differ', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { messageId: 'django-1' }))

    outbox.append(1, 'message.status', receipt('delivered', { messageId: 'django-2' }))

    assert.equal(outboxRows(db).length, 2)
  })

  it('keeps receipts of different users apart', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent'))

    outbox.append(2, 'message.status', receipt('delivered'))

    assert.deepEqual(outboxRows(db).map((row) => row.user_id), [1, 2])
  })

  it('folds by gateway id when there is no message_id', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { messageId: null, timestamp: T1 }))

    const event = outbox.append(1, 'message.status', receipt('delivered', { messageId: null, timestamp: T2 }))

    assert.deepEqual(event.data, { ...receipt('delivered', { messageId: null, timestamp: T2 }), earlier: { sent: T1 } })
    assert.equal(outboxRows(db).length, 1)
  })

  it('takes a null message_id from the folded receipt', async (t) => {
    const { outbox } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { messageId: 'django-1', timestamp: T1 }))

    const event = outbox.append(1, 'message.status', receipt('delivered', { messageId: null, timestamp: T2 }))

    assert.equal(event.data.message_id, 'django-1')
  })

  it('takes message_id from the newer receipt', async (t) => {
    const { outbox } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { messageId: null, timestamp: T1 }))

    const event = outbox.append(1, 'message.status', receipt('delivered', { messageId: 'django-1', timestamp: T2 }))

    assert.equal(event.data.message_id, 'django-1')
    assert.deepEqual(event.data.earlier, { sent: T1 })
  })

  it('takes a null chat_jid from the folded receipt', async (t) => {
    const { outbox } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    const event = outbox.append(1, 'message.status', receipt('read', { chatJid: null, timestamp: T3 }))

    assert.equal(event.data.chat_jid, CHAT)
  })

  it('uses occurred_at for a lower receipt without timestamp', async (t) => {
    const sentAt = Date.parse('2026-01-31T12:00:05.000Z')
    let clockMs = sentAt
    const { outbox } = await idleOutbox(t, { clock: () => clockMs })
    outbox.append(1, 'message.status', receipt('sent', { timestamp: null }))
    clockMs += 2000

    const event = outbox.append(1, 'message.status', receipt('delivered', { timestamp: null }))

    assert.deepEqual(event.data.earlier, { sent: new Date(sentAt).toISOString() })
    assert.equal(event.data.timestamp, new Date(sentAt + 2000).toISOString())
  })

  it('keeps the time of a waiting higher receipt without timestamp', async (t) => {
    const readAt = Date.parse('2026-01-31T12:00:05.000Z')
    let clockMs = readAt
    const { outbox } = await idleOutbox(t, { clock: () => clockMs })
    outbox.append(1, 'message.status', receipt('read', { timestamp: null }))
    clockMs += 2000

    const event = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T1 }))

    assert.equal(event.data.status, 'read')
    assert.equal(event.data.timestamp, new Date(readAt).toISOString())
    assert.deepEqual(event.data.earlier, { delivered: T1 })
  })

  it('keeps the earliest time of a status listed twice', async (t) => {
    const { outbox } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    outbox.append(1, 'message.status', receipt('read', { timestamp: T3 }))

    const event = outbox.append(1, 'message.status', receipt('sent', { timestamp: T2 }))

    assert.deepEqual(event.data, { ...receipt('read', { timestamp: T3 }), earlier: { sent: T1 } })
  })

  it('keeps the earliest time of a repeated main status', async (t) => {
    const { outbox } = await idleOutbox(t)
    outbox.append(1, 'message.status', receipt('read', { timestamp: T2 }))

    const event = outbox.append(1, 'message.status', receipt('read', { timestamp: T3 }))

    assert.equal(event.data.timestamp, T2)
    assert.deepEqual(event.data.earlier, {})
  })

  it('folds into a pending receipt after a restart', async (t) => {
    const first = await idleOutbox(t)
    first.outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    await first.outbox.close()
    first.db.close()

    const reopened = await idleOutbox(t, { dataDir: first.dataDir })
    const event = reopened.outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    assert.deepEqual(event.data.earlier, { sent: T1 })
    assert.equal(outboxRows(reopened.db).length, 1)
  })

  it('folds into a requeued dead letter', async (t) => {
    const { outbox, db } = await idleOutbox(t)
    db.prepare(
      'INSERT INTO dead_letters (seq, event_id, user_id, type, occurred_at, data, http_status, reason, failed_at) ' +
        "VALUES (1, 'dead-1', 1, 'message.status', ?, ?, 400, 'rejected', ?)"
    ).run(T1, JSON.stringify(receipt('sent', { timestamp: T1 })), T1)

    assert.equal(outbox.requeueDeadLetters(), 1)
    const event = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    assert.deepEqual(event.data.earlier, { sent: T1 })
    assert.deepEqual(outboxRows(db).map((row) => row.event_id), [event.event_id])
  })

  it('keeps the pending count when receipts fold', async (t) => {
    const callbacks = controlledFetch()
    const { outbox } = await makeOutbox(t, { fetch: callbacks.fetch, lingerMs: 60000 })
    outbox.append(1, 'message.received', { index: 0 })
    await waitFor(() => callbacks.requests.length === 1)

    // Each receipt folds into the one before it. If folds counted as new
    // events, the count would reach a full request and one would start
    // during the linger.
    for (let index = 0; index < MAX_BATCH + 10; index += 1) {
      outbox.append(2, 'message.status', receipt('read', { timestamp: T3 }))
    }
    await sleep(100)

    assert.equal(outbox.pendingCount(), 2)
    assert.equal(callbacks.requests.length, 1)
  })

  it('counts folded receipts in /metrics', async (t) => {
    const metrics = createMetrics({ read: { sessionCounts: () => ({}), outboxPending: () => 0, deadLetterCount: () => 0 } })
    const { outbox } = await idleOutbox(t, { metrics })
    outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))
    outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))
    outbox.append(1, 'message.status', receipt('read', { timestamp: T3 }))

    const text = await metrics.register.metrics()

    assert.match(text, /wa_gateway_statuses_folded_total 2/)
    assert.match(text, /wa_gateway_events_total\{type="message.status"\} 3/)
  })

  it('logs a fold with ids and without receipt data', async (t) => {
    const sink = logSink()
    const { outbox } = await idleOutbox(t, { logger: createLogger({ level: 'debug', destination: sink.stream }) })
    const sent = outbox.append(1, 'message.status', receipt('sent', { timestamp: T1 }))

    const delivered = outbox.append(1, 'message.status', receipt('delivered', { timestamp: T2 }))

    const line = sink.lines.find((item) => item.msg === 'folded a status receipt into a pending one')
    assert.equal(line.level, 20)
    assert.equal(line.userId, 1)
    assert.equal(line.seq, delivered.seq)
    assert.equal(line.foldedSeq, sent.seq)
    assert.ok(!sink.text().includes(CHAT))
  })
})
