import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { openDatabase } from '../src/database.js'
import { SendStore } from '../src/send-store.js'
import { makeDataDir } from './helpers.js'

const HOUR_MS = 60 * 60 * 1000

// A database that counts its SELECTs by WhatsApp id, so a test can check
// whether a lookup went to SQLite or stayed in memory.
function countingDatabase (db) {
  const counts = { byGatewayId: 0 }
  const proxy = new Proxy(db, {
    get (target, property) {
      const value = Reflect.get(target, property)
      if (property !== 'prepare') return typeof value === 'function' ? value.bind(target) : value
      return (sql) => {
        const statement = target.prepare(sql)
        if (!sql.startsWith('SELECT message_id FROM sends')) return statement
        return {
          get: (...args) => {
            counts.byGatewayId += 1
            return statement.get(...args)
          }
        }
      }
    }
  })
  return { db: proxy, counts }
}

async function makeStore (t, { dataDir, recentMax, clock } = {}) {
  const dir = dataDir ?? await makeDataDir(t)
  const raw = openDatabase({ dataDir: dir })
  t.after(() => raw.close())
  const { db, counts } = countingDatabase(raw)
  const store = new SendStore({ db, ttlMs: 24 * HOUR_MS, recentMax, clock })
  return { store, counts, raw, dataDir: dir }
}

function sent (store, userId, messageId, gatewayMessageId) {
  store.begin(userId, messageId, 'hash')
  store.markSent(userId, messageId, gatewayMessageId, '5511900000001@s.whatsapp.net')
}

describe('SendStore.messageIdFor', () => {
  it('looks up a recent send in memory', async (t) => {
    const { store, counts } = await makeStore(t)
    sent(store, 1, 'django-1', '3EB0A1')

    assert.equal(store.messageIdFor(1, '3EB0A1'), 'django-1')
    assert.equal(store.isOwnSend(1, '3EB0A1'), true)
    assert.equal(counts.byGatewayId, 0)
  })

  it('reads SQLite after a restart', async (t) => {
    const first = await makeStore(t)
    sent(first.store, 1, 'django-1', '3EB0A1')

    const second = await makeStore(t, { dataDir: first.dataDir })

    assert.equal(second.store.messageIdFor(1, '3EB0A1'), 'django-1')
    assert.equal(second.counts.byGatewayId, 1)
  })

  it('reads SQLite for a send evicted from memory', async (t) => {
    const { store, counts } = await makeStore(t, { recentMax: 2 })
    sent(store, 1, 'django-1', '3EB0A1')
    sent(store, 1, 'django-2', '3EB0A2')
    sent(store, 1, 'django-3', '3EB0A3')

    assert.equal(store.messageIdFor(1, '3EB0A3'), 'django-3')
    assert.equal(store.messageIdFor(1, '3EB0A2'), 'django-2')
    assert.equal(counts.byGatewayId, 0)
    assert.equal(store.messageIdFor(1, '3EB0A1'), 'django-1')
    assert.equal(counts.byGatewayId, 1)
  })

  it('reads SQLite once the record TTL has passed', async (t) => {
    let now = Date.parse('2026-01-31T12:00:00.000Z')
    const { store, counts } = await makeStore(t, { clock: () => now })
    sent(store, 1, 'django-1', '3EB0A1')

    now += 25 * HOUR_MS

    // The row is still there until the next purge.
    assert.equal(store.messageIdFor(1, '3EB0A1'), 'django-1')
    assert.equal(counts.byGatewayId, 1)
    store.purgeExpired()
    assert.equal(store.messageIdFor(1, '3EB0A1'), null)
  })

  it('keeps users apart', async (t) => {
    const { store } = await makeStore(t)
    sent(store, 1, 'django-1', '3EB0A1')

    assert.equal(store.messageIdFor(2, '3EB0A1'), null)
  })

  it('returns null for a message not sent here', async (t) => {
    const { store, counts } = await makeStore(t)

    assert.equal(store.messageIdFor(1, '3A0000000000000001'), null)
    assert.equal(store.messageIdFor(1, null), null)
    assert.equal(counts.byGatewayId, 1)
  })
})
