import assert from 'node:assert/strict'
import { join } from 'node:path'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { describe, it } from 'node:test'

import Database from 'better-sqlite3'

import { openDatabase } from '../src/database.js'
import { createLogger } from '../src/logger.js'
import { Outbox } from '../src/outbox.js'
import { SendStore } from '../src/send-store.js'
import { commitTurn, onTurnLost, writeInTurn } from '../src/turn-writes.js'
import { buildTestApp, logSink, makeDataDir, post, SECRET, waitFor } from './helpers.js'

const silent = { debug () {}, info () {}, warn () {}, error () {}, child () { return this } }

function receipt (status) {
  return { gateway_message_id: 'WA-1', message_id: 'django-1', chat_jid: null, status, error: null, timestamp: null }
}

// Leaves room for a small row but not for a 64 KiB one, as a nearly full disk.
function fillDisk (db) {
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) + 2}`)
}

// A database with a table whose rows need a parent, checked at COMMIT.
async function openWithDeferredCheck (t) {
  const dataDir = await makeDataDir(t)
  const db = openDatabase({ dataDir })
  db.exec(
    'CREATE TABLE parent (id INTEGER PRIMARY KEY);' +
      'CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)'
  )
  // Another connection reads only what is committed.
  const reader = new Database(join(dataDir, 'gateway.db'), { readonly: true })
  t.after(() => {
    reader.close()
    if (db.open) db.close()
  })
  return { db, reader, dataDir }
}

function parentCount (reader) {
  return reader.prepare('SELECT COUNT(*) AS count FROM parent').get().count
}

describe('writes in one event loop turn', () => {
  it('commit together when the turn ends', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    const insert = db.prepare('INSERT INTO parent (id) VALUES (?)')

    writeInTurn(db, () => insert.run(1))
    writeInTurn(db, () => insert.run(2))

    assert.equal(parentCount(reader), 0)
    assert.equal(db.prepare('SELECT COUNT(*) AS count FROM parent').get().count, 2)
    await nextTurn()
    assert.equal(parentCount(reader), 2)
  })

  it('commit at once on commitTurn', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    writeInTurn(db, () => db.prepare('INSERT INTO parent (id) VALUES (1)').run())

    commitTurn(db)

    assert.equal(parentCount(reader), 1)
    assert.equal(db.inTransaction, false)
  })

  it('roll back together when the commit fails', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    const errors = []
    onTurnLost(db, ({ error }) => errors.push(error))

    writeInTurn(db, () => db.prepare('INSERT INTO parent (id) VALUES (1)').run())
    writeInTurn(db, () => db.prepare('INSERT INTO child (parent_id) VALUES (99)').run())
    await nextTurn()

    assert.equal(errors.length, 1)
    assert.equal(errors[0].code, 'SQLITE_CONSTRAINT_FOREIGNKEY')
    assert.equal(db.inTransaction, false)
    assert.equal(parentCount(reader), 0)
    assert.equal(db.prepare('SELECT COUNT(*) AS count FROM parent').get().count, 0)
  })

  it('throw from commitTurn when the commit fails', async (t) => {
    const { db } = await openWithDeferredCheck(t)
    writeInTurn(db, () => db.prepare('INSERT INTO child (parent_id) VALUES (99)').run())

    assert.throws(() => commitTurn(db), { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' })
    assert.equal(db.inTransaction, false)
  })

  it('end when SQLite rolls the turn back', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    const errors = []
    onTurnLost(db, ({ error }) => errors.push(error))
    fillDisk(db)
    db.exec('CREATE TABLE note (text TEXT)')

    writeInTurn(db, () => db.prepare('INSERT INTO parent (id) VALUES (1)').run())
    const large = () => db.prepare('INSERT INTO note (text) VALUES (?)').run('x'.repeat(65536))
    assert.throws(() => writeInTurn(db, large), { code: 'SQLITE_FULL' })

    assert.equal(errors.length, 1)
    assert.equal(errors[0].code, 'SQLITE_FULL')
    writeInTurn(db, () => db.prepare('INSERT INTO parent (id) VALUES (2)').run())
    await nextTurn()
    assert.deepEqual(reader.prepare('SELECT id FROM parent').all(), [{ id: 2 }])
  })

  it('end when a transaction inside them is rolled back', async (t) => {
    const { db } = await openWithDeferredCheck(t)
    const errors = []
    onTurnLost(db, ({ error }) => errors.push(error))
    fillDisk(db)
    db.exec('CREATE TABLE note (text TEXT)')

    writeInTurn(db, () => db.prepare('INSERT INTO parent (id) VALUES (1)').run())
    const large = db.transaction(() => db.prepare('INSERT INTO note (text) VALUES (?)').run('x'.repeat(65536)))
    assert.throws(() => large(), { code: 'SQLITE_FULL' })

    assert.throws(() => commitTurn(db), /rolled back the writes of this event loop turn/)
    assert.equal(errors.length, 1)
  })

  it('join a transaction opened by db.transaction()', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    const insert = db.prepare('INSERT INTO parent (id) VALUES (?)')

    db.transaction(() => {
      insert.run(1)
      writeInTurn(db, () => insert.run(2))
    })()

    assert.equal(db.inTransaction, false)
    assert.equal(parentCount(reader), 2)
  })
})

describe('send records and the turn', () => {
  it('commit a claim before begin() returns', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    const sends = new SendStore({ db, ttlMs: 60_000 })
    writeInTurn(db, () => db.prepare('INSERT INTO parent (id) VALUES (1)').run())

    assert.equal(sends.begin(1, 'django-1', 'hash'), true)

    assert.equal(reader.prepare('SELECT state FROM sends').get().state, 'sending')
    assert.equal(parentCount(reader), 1)
  })

  it('write a lost sent mark again', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    const sends = new SendStore({ db, ttlMs: 60_000 })
    sends.begin(1, 'django-1', 'hash')

    sends.markSent(1, 'django-1', 'WA-1', '5511900000001@s.whatsapp.net')
    writeInTurn(db, () => db.prepare('INSERT INTO child (parent_id) VALUES (99)').run())
    await nextTurn()

    assert.deepEqual(reader.prepare('SELECT state, gateway_message_id FROM sends').get(), { state: 'sent', gateway_message_id: 'WA-1' })
  })

  it('retry a lost sent mark that failed again', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    // The mark's statement fails once more when it is written again.
    const prepare = db.prepare.bind(db)
    let markFailures = 0
    db.prepare = (sql) => {
      const statement = prepare(sql)
      if (!sql.startsWith('UPDATE sends')) return statement
      return {
        run: (...params) => {
          if (markFailures > 0) {
            markFailures -= 1
            throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' })
          }
          return statement.run(...params)
        }
      }
    }
    const sends = new SendStore({ db, ttlMs: 60_000 })
    sends.begin(1, 'django-1', 'hash')
    sends.markSent(1, 'django-1', 'WA-1', '5511900000001@s.whatsapp.net')
    writeInTurn(db, () => db.prepare('INSERT INTO child (parent_id) VALUES (99)').run())
    markFailures = 1
    await nextTurn()
    assert.equal(reader.prepare("SELECT state FROM sends WHERE message_id = 'django-1'").get().state, 'sending')

    sends.begin(1, 'django-2', 'hash')

    assert.equal(reader.prepare("SELECT state FROM sends WHERE message_id = 'django-1'").get().state, 'sent')
  })

  it('commit before /send responds', async (t) => {
    const dataDir = await makeDataDir(t)
    const app = await buildTestApp(t, { dataDir })
    const reader = new Database(join(dataDir, 'gateway.db'), { readonly: true })
    t.after(() => reader.close())
    await post(app, '/start', { user_id: 1 })
    await post(app, '/sim/scan', { user_id: 1, phone: '+5511900000009' })

    const response = await post(app, '/send', { user_id: 1, message_id: 'django-1', to: '+5511900000001', text: 'Hello' })

    assert.equal(response.statusCode, 202)
    const row = reader.prepare('SELECT state, gateway_message_id FROM sends').get()
    assert.deepEqual(row, { state: 'sent', gateway_message_id: response.json().gateway_message_id })
  })
})

describe('outbox rows and the turn', () => {
  function makeOutbox (db, url, { logger = silent, fetch } = {}) {
    return new Outbox({
      db,
      callback: { url, timeoutMs: 2000, backoffFirstMs: 20, backoffMaxMs: 200, concurrency: 4, lingerMs: 0 },
      secret: SECRET,
      logger,
      fetch
    })
  }

  it('are committed before a request posts them', async (t) => {
    const { db, reader } = await openWithDeferredCheck(t)
    const committedAtPost = []
    const fetch = async (url, { body }) => {
      committedAtPost.push([JSON.parse(body).events.length, reader.prepare('SELECT COUNT(*) AS count FROM outbox').get().count])
      return new Response('{}', { status: 200 })
    }
    const outbox = makeOutbox(db, 'http://127.0.0.1:9/callback', { fetch })
    t.after(() => outbox.close())
    outbox.start()

    // The dispatcher's pass is queued before the turn that contains the
    // second event, so it takes that event before the turn ends.
    outbox.append(1, 'message.received', { n: 1 })
    commitTurn(db)
    outbox.append(1, 'message.received', { n: 2 })

    await waitFor(() => outbox.pendingCount() === 0)
    assert.deepEqual(committedAtPost[0], [2, 2])
  })

  it('keep another user\'s event after a rollback', async (t) => {
    const { db } = await openWithDeferredCheck(t)
    const outbox = makeOutbox(db, 'http://127.0.0.1:9/callback')
    t.after(() => outbox.close())
    fillDisk(db)

    outbox.append(1, 'message.status', receipt('sent'))
    assert.throws(() => outbox.append(2, 'message.received', { text: 'x'.repeat(65536) }), { code: 'SQLITE_FULL' })
    // The rolled-back row's seq is free again, and this event takes it.
    const other = outbox.append(3, 'message.received', { text: 'hello' })
    outbox.append(1, 'message.status', receipt('delivered'))
    commitTurn(db)

    const users = db.prepare('SELECT user_id FROM outbox ORDER BY seq').all().map((row) => row.user_id)
    assert.deepEqual(users, [3, 1])
    assert.equal(outbox.pendingCount(), 2)
    assert.equal(other.seq, 1)
  })

  it('keep the next receipt after a failed requeue', async (t) => {
    const { db } = await openWithDeferredCheck(t)
    const outbox = makeOutbox(db, 'http://127.0.0.1:9/callback')
    t.after(() => outbox.close())
    db.prepare(
      'INSERT INTO dead_letters (seq, event_id, user_id, type, occurred_at, data, http_status, reason, failed_at) ' +
        "VALUES (1, 'dead-1', 5, 'message.received', '2026-01-01T00:00:00Z', ?, 400, 'rejected', '2026-01-01T00:00:00Z')"
    ).run(JSON.stringify({ text: 'x'.repeat(65536) }))
    fillDisk(db)

    outbox.append(1, 'message.status', receipt('sent'))
    assert.throws(() => outbox.requeueDeadLetters(), { code: 'SQLITE_FULL' })
    const delivered = outbox.append(1, 'message.status', receipt('delivered'))
    commitTurn(db)

    assert.equal(delivered.data.earlier, undefined)
    assert.deepEqual(db.prepare('SELECT event_id FROM outbox').all(), [{ event_id: delivered.event_id }])
  })

  it('are posted again when their delete is lost', async (t) => {
    const { db } = await openWithDeferredCheck(t)
    const posted = []
    const fetch = async (url, { body }) => {
      posted.push(JSON.parse(body).events.map((event) => event.seq))
      // The delete of the first request's rows joins a turn that is lost.
      if (posted.length === 1) {
        queueMicrotask(() => writeInTurn(db, () => db.prepare('INSERT INTO child (parent_id) VALUES (99)').run()))
      }
      return new Response('{}', { status: 200 })
    }
    const outbox = makeOutbox(db, 'http://127.0.0.1:9/callback', { fetch })
    t.after(() => outbox.close())
    outbox.start()

    outbox.append(1, 'message.received', { n: 1 })

    await waitFor(() => posted.length === 2 && outbox.pendingCount() === 0)
    assert.deepEqual(posted, [[1], [1]])
  })

  it('are forgotten when their turn is lost', async (t) => {
    const { db } = await openWithDeferredCheck(t)
    const sink = logSink()
    const logger = createLogger({ level: 'error', destination: sink.stream })
    const outbox = makeOutbox(db, 'http://127.0.0.1:9/callback', { logger })
    t.after(() => outbox.close())

    outbox.append(1, 'message.status', receipt('sent'))
    writeInTurn(db, () => db.prepare('INSERT INTO child (parent_id) VALUES (99)').run())
    await nextTurn()
    const delivered = outbox.append(1, 'message.status', receipt('delivered'))
    commitTurn(db)

    assert.equal(delivered.data.earlier, undefined)
    assert.equal(outbox.pendingCount(), 1)
    await waitFor(() => sink.lines.some((line) => line.msg.includes('outbox writes of an event loop turn were rolled back')))
  })
})
