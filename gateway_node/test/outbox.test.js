import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { describe, it } from 'node:test'

import { openDatabase } from '../src/database.js'
import { createLogger } from '../src/logger.js'
import { MAX_BATCH, Outbox } from '../src/outbox.js'
import { SECRET, makeDataDir, startFakeDjango, waitFor } from './helpers.js'

const silent = createLogger({ level: 'silent' })

async function makeOutbox (t, { url, dataDir, backoff = [20, 200], timeoutMs = 2000, concurrency = 4, start = true } = {}) {
  const dir = dataDir ?? await makeDataDir(t)
  const db = openDatabase({ dataDir: dir })
  const outbox = new Outbox({
    db,
    callback: { url, timeoutMs, backoffFirstMs: backoff[0], backoffMaxMs: backoff[1], concurrency },
    secret: SECRET,
    logger: silent
  })
  t.after(async () => {
    await outbox.close()
    db.close()
  })
  if (start) outbox.start()
  return { outbox, db, dataDir: dir }
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
