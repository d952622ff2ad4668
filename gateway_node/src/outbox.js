// Durable outbox of callback events, and the dispatcher that posts them to
// Django.
//
// An event is committed to SQLite before anything else happens with it, and
// its row is deleted only after Django responds 2xx, so neither a Django
// outage nor a gateway crash loses it. Each user's events form a lane that is
// posted in `seq` order, one batch in flight per lane. A lane that Django
// rejects backs off alone. Failures that mean Django itself is unreachable
// pause every lane, so an outage costs one probe per backoff step instead of
// one request per user.

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'

import { SIGNATURE_HEADER, sign } from './signing.js'

export const MAX_BATCH = 100

const LATEST_DEAD_LETTERS = 5
const RESPONSE_EXCERPT = 300

// Statuses that mean Django as a whole cannot take callbacks right now.
// 401 and 403 mean the shared secret or Django's configuration is wrong for
// every user alike. The events wait for the operator's fix instead of being
// dead-lettered.
const ENDPOINT_STATUSES = new Set([401, 403, 429, 502, 503, 504])

function eventJson (row) {
  // `data` is stored as JSON text and spliced in as is.
  return `{"event_id":${JSON.stringify(row.event_id)},"seq":${row.seq},` +
    `"type":${JSON.stringify(row.type)},"user_id":${row.user_id},` +
    `"occurred_at":${JSON.stringify(row.occurred_at)},"data":${row.data}}`
}

function batchBody (rows) {
  return `{"events":[${rows.map(eventJson).join(',')}]}`
}

function parseRetryAfter (value, now) {
  if (!value) return 0
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? 0 : Math.max(0, date - now)
}

// A short description of a network error, without the stack: these repeat
// on every retry while Django is down.
function describe (error) {
  if (!error) return undefined
  const cause = error.cause?.code ?? error.cause?.message
  return cause ? `${error.message} (${cause})` : error.message
}

function classify (outcome) {
  if (outcome.error) return 'endpoint'
  const { status } = outcome
  if (status >= 200 && status < 300) return 'delivered'
  if (ENDPOINT_STATUSES.has(status)) return 'endpoint'
  // A redirect means WA_CALLBACK_URL is not the final address. Retrying keeps
  // the events until the setting is fixed.
  if (status === 408 || status >= 500 || status < 400) return 'lane'
  return 'rejected'
}

export class Outbox {
  #db
  #sql
  #url
  #signedPath
  #secret
  #timeoutMs
  #backoffFirstMs
  #backoffMaxMs
  #concurrency
  #logger
  #metrics
  #fetch
  #random
  #clock

  // userId -> { attempts, retryAt, limit }, present while the user has
  // pending events. Map order is the order lanes get their turn.
  #lanes = new Map()
  #inFlight = new Map()
  #endpoint = { attempts: 0, retryAt: 0 }
  #running = false
  #closed = false
  #passQueued = false
  #timer = null
  #timerAt = Infinity
  #deadline = Infinity
  #draining = false

  constructor ({ db, callback, secret, logger, metrics, fetch = globalThis.fetch, random = Math.random, clock = Date.now }) {
    this.#db = db
    this.#url = callback.url
    const url = new URL(callback.url)
    this.#signedPath = url.pathname + url.search
    this.#secret = secret
    this.#timeoutMs = callback.timeoutMs
    this.#backoffFirstMs = callback.backoffFirstMs
    this.#backoffMaxMs = callback.backoffMaxMs
    this.#concurrency = callback.concurrency
    this.#logger = logger
    this.#metrics = metrics
    this.#fetch = fetch
    this.#random = random
    this.#clock = clock
    this.#sql = this.#prepare()

    for (const { user_id: userId } of this.#sql.lanes.all()) this.#openLane(userId)
  }

  #prepare () {
    const db = this.#db
    return {
      insert: db.prepare(
        'INSERT INTO outbox (event_id, user_id, type, occurred_at, data) VALUES (?, ?, ?, ?, ?)'
      ),
      lanes: db.prepare(
        'SELECT user_id FROM outbox GROUP BY user_id ORDER BY MIN(seq)'
      ),
      batch: db.prepare(
        'SELECT seq, event_id, user_id, type, occurred_at, data FROM outbox WHERE user_id = ? ORDER BY seq LIMIT ?'
      ),
      hasPending: db.prepare('SELECT 1 FROM outbox WHERE user_id = ? LIMIT 1'),
      deleteUpTo: db.prepare('DELETE FROM outbox WHERE user_id = ? AND seq <= ?'),
      pending: db.prepare('SELECT COUNT(*) AS count FROM outbox'),
      moveToDeadLetters: db.prepare(
        'INSERT OR IGNORE INTO dead_letters ' +
          '(seq, event_id, user_id, type, occurred_at, data, http_status, reason, failed_at) ' +
          'SELECT seq, event_id, user_id, type, occurred_at, data, ?, ?, ? ' +
          'FROM outbox WHERE user_id = ? AND seq <= ?'
      ),
      deadLetterCount: db.prepare('SELECT COUNT(*) AS count FROM dead_letters'),
      deadLetters: db.prepare(
        'SELECT seq, event_id, user_id, type, occurred_at, data FROM dead_letters ORDER BY seq'
      ),
      deadLettersOfUser: db.prepare(
        'SELECT seq, event_id, user_id, type, occurred_at, data FROM dead_letters ' +
          'WHERE user_id = ? ORDER BY seq'
      ),
      deleteDeadLetter: db.prepare('DELETE FROM dead_letters WHERE seq = ?'),
      latestDeadLetters: db.prepare(
        'SELECT event_id FROM dead_letters ORDER BY failed_at DESC, seq DESC LIMIT ?'
      )
    }
  }

  /**
   * Commits one event and returns it as it will be posted. `seq` is the row
   * id: AUTOINCREMENT never reuses a number, even after rows are deleted, so
   * it keeps growing across restarts.
   */
  append (userId, type, data) {
    const event = {
      event_id: randomUUID(),
      seq: 0,
      type,
      user_id: userId,
      occurred_at: new Date(this.#clock()).toISOString(),
      data
    }
    const result = this.#sql.insert.run(
      event.event_id, userId, type, event.occurred_at, JSON.stringify(data)
    )
    event.seq = Number(result.lastInsertRowid)

    this.#metrics?.events.inc({ type })
    this.#openLane(userId)
    this.#schedule()
    return event
  }

  /**
   * Moves the dead letters, all or those of `userId`, back into the outbox
   * and returns how many moved. Each keeps its event id, type, time and
   * data, and goes after the events already waiting for its user. Run it
   * once Django accepts such events again.
   */
  requeueDeadLetters (userId = null) {
    const rows = this.#db.transaction(() => {
      const found = userId === null
        ? this.#sql.deadLetters.all()
        : this.#sql.deadLettersOfUser.all(userId)
      for (const row of found) {
        this.#sql.insert.run(row.event_id, row.user_id, row.type, row.occurred_at, row.data)
        this.#sql.deleteDeadLetter.run(row.seq)
      }
      return found
    })()
    if (rows.length === 0) return 0

    const users = [...new Set(rows.map((row) => row.user_id))]
    for (const user of users) this.#openLane(user)
    this.#logger.warn({ count: rows.length, user_ids: users }, 'requeued dead letters')
    this.#schedule()
    return rows.length
  }

  pendingCount () {
    return this.#sql.pending.get().count
  }

  deadLetterCount () {
    return this.#sql.deadLetterCount.get().count
  }

  /** Count of dead letters and the event ids of the latest few. */
  deadLetterSummary () {
    return {
      count: this.deadLetterCount(),
      latest_event_ids: this.#sql.latestDeadLetters.all(LATEST_DEAD_LETTERS).map((row) => row.event_id)
    }
  }

  /** Starts posting pending events, those left from a previous run included. */
  start () {
    if (this.#closed) return
    this.#running = true
    const pending = this.pendingCount()
    if (pending) this.#logger.info({ pending, lanes: this.#lanes.size }, 'resending outbox events left from the previous run')
    this.#schedule()
  }

  /**
   * Posts as much as Django accepts within `timeoutMs`, then stops. Backoff
   * is reset first so that every lane gets one more try. Returns the number
   * of events still pending.
   */
  async drain (timeoutMs) {
    const deadline = this.#clock() + timeoutMs
    this.#deadline = deadline
    this.#draining = true
    this.#running = true
    this.#endpoint = { attempts: 0, retryAt: 0 }
    for (const lane of this.#lanes.values()) lane.retryAt = 0
    this.#schedule()

    while (this.#clock() < deadline) {
      if (this.#inFlight.size === 0 && !this.#hasLaneReadyBefore(deadline)) break
      await sleep(Math.min(20, Math.max(1, deadline - this.#clock())))
    }
    await this.close()
    return this.pendingCount()
  }

  /** Stops dispatching and aborts posts in flight; their events stay pending. */
  async close () {
    this.#closed = true
    this.#running = false
    this.#clearTimer()
    for (const controller of this.#inFlight.values()) controller.abort()
    while (this.#inFlight.size) await sleep(5)
  }

  #hasLaneReadyBefore (time) {
    if (this.#lanes.size === 0) return false
    if (this.#endpoint.retryAt >= time) return false
    for (const lane of this.#lanes.values()) {
      if (lane.retryAt < time) return true
    }
    return false
  }

  #openLane (userId) {
    if (!this.#lanes.has(userId)) {
      this.#lanes.set(userId, { attempts: 0, retryAt: 0, limit: MAX_BATCH })
    }
  }

  #schedule () {
    if (this.#passQueued || !this.#running || this.#closed) return
    this.#passQueued = true
    setImmediate(() => this.#pass())
  }

  #clearTimer () {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerAt = Infinity
  }

  #wakeAt (time) {
    if (time >= this.#timerAt || !this.#running) return
    this.#clearTimer()
    this.#timerAt = time
    const delay = Math.max(0, time - this.#clock())
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#timerAt = Infinity
      this.#schedule()
    }, delay)
    this.#timer.unref()
  }

  #pass () {
    this.#passQueued = false
    if (!this.#running || this.#closed) return

    const now = this.#clock()
    if (this.#endpoint.retryAt > now) {
      this.#wakeAt(this.#endpoint.retryAt)
      return
    }
    // While Django is failing, one lane probes it at a time.
    const slots = this.#endpoint.attempts > 0 ? 1 : this.#concurrency

    let nextRetryAt = Infinity
    for (const [userId, lane] of this.#lanes) {
      if (this.#inFlight.size >= slots) break
      if (this.#inFlight.has(userId)) continue
      if (lane.retryAt > now) {
        nextRetryAt = Math.min(nextRetryAt, lane.retryAt)
        continue
      }
      this.#deliver(userId, lane)
    }
    if (nextRetryAt < Infinity) this.#wakeAt(nextRetryAt)
  }

  async #deliver (userId, lane) {
    const controller = new AbortController()
    this.#inFlight.set(userId, controller)
    // Move the lane to the back so other users get their turn first.
    this.#lanes.delete(userId)
    this.#lanes.set(userId, lane)

    try {
      const rows = this.#sql.batch.all(userId, lane.limit)
      if (rows.length === 0) {
        this.#lanes.delete(userId)
        return
      }
      const outcome = await this.#post(rows, controller.signal)
      if (controller.signal.aborted) return
      this.#settle(userId, lane, rows, outcome)
    } catch (error) {
      this.#logger.error({ err: error, userId }, 'callback dispatch failed unexpectedly; retrying with backoff')
      this.#backOff(lane, {})
    } finally {
      this.#inFlight.delete(userId)
      if (!this.#sql.hasPending.get(userId)) this.#lanes.delete(userId)
      this.#schedule()
    }
  }

  async #post (rows, abortSignal) {
    const body = batchBody(rows)
    const header = sign({
      secret: this.#secret,
      timestamp: Math.floor(this.#clock() / 1000),
      method: 'POST',
      path: this.#signedPath,
      body
    })
    const timeoutMs = Math.max(1, Math.min(this.#timeoutMs, this.#deadline - this.#clock()))
    const signal = AbortSignal.any([abortSignal, AbortSignal.timeout(timeoutMs)])

    try {
      const response = await this.#fetch(this.#url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: header },
        body,
        signal,
        redirect: 'manual'
      })
      const text = await response.text().catch(() => '')
      return {
        status: response.status,
        retryAfter: response.headers.get('retry-after'),
        excerpt: text.slice(0, RESPONSE_EXCERPT)
      }
    } catch (error) {
      return { error }
    }
  }

  #settle (userId, lane, rows, outcome) {
    const kind = classify(outcome)
    const lastSeq = rows[rows.length - 1].seq
    const context = {
      userId,
      events: rows.length,
      firstSeq: rows[0].seq,
      lastSeq,
      status: outcome.status
    }

    if (kind === 'delivered') {
      this.#sql.deleteUpTo.run(userId, lastSeq)
      lane.attempts = 0
      lane.retryAt = 0
      lane.limit = Math.min(MAX_BATCH, lane.limit * 2)
      this.#endpoint = { attempts: 0, retryAt: 0 }
      this.#metrics?.callbackAttempts.inc({ outcome: 'delivered' })
      this.#logger.debug(context, 'callback batch delivered')
      return
    }

    if (kind === 'rejected') {
      if (rows.length > 1) {
        // Halve the batch until the rejected event is alone in its batch,
        // so a 413 or one invalid event does not take its neighbours down.
        lane.limit = Math.max(1, Math.floor(rows.length / 2))
        this.#metrics?.callbackAttempts.inc({ outcome: 'split' })
        this.#logger.warn({ ...context, nextBatch: lane.limit, response: outcome.excerpt }, 'Django rejected a callback batch; splitting it')
        return
      }
      this.#deadLetter(userId, rows[0], outcome)
      lane.attempts = 0
      lane.retryAt = 0
      return
    }

    this.#metrics?.callbackAttempts.inc({ outcome: 'retried' })
    const target = kind === 'endpoint' ? this.#endpoint : lane
    const delay = this.#backOff(target, outcome)
    this.#logger.warn({
      ...context,
      error: describe(outcome.error),
      attempt: target.attempts,
      retryInMs: delay,
      scope: kind === 'endpoint' ? 'all users' : 'this user',
      response: outcome.excerpt
    }, this.#draining ? 'callback delivery failed; events stay pending for the next start' : 'callback delivery failed; will retry')
  }

  #backOff (target, outcome) {
    target.attempts += 1
    const now = this.#clock()
    if (this.#draining) {
      // Shutting down: a failed lane, or a failing Django, gets no retry
      // before exit. The events stay pending for the next start.
      target.retryAt = Infinity
      return 0
    }
    const ceiling = Math.min(this.#backoffMaxMs, this.#backoffFirstMs * 2 ** (target.attempts - 1))
    // Equal jitter: at least half the step, so retries never bunch up at 0.
    let delay = Math.round(ceiling / 2 + this.#random() * (ceiling / 2))
    const retryAfter = parseRetryAfter(outcome.retryAfter, now)
    if (retryAfter) delay = Math.max(delay, Math.min(this.#backoffMaxMs, retryAfter))
    target.retryAt = now + delay
    this.#wakeAt(target.retryAt)
    return delay
  }

  #deadLetter (userId, row, outcome) {
    const status = outcome.status ?? null
    const reason = status === 413
      ? 'The event alone is larger than Django accepts (413).'
      : `Django rejected the event with ${status}: ${outcome.excerpt || 'no body'}`
    const failedAt = new Date(this.#clock()).toISOString()

    this.#db.transaction(() => {
      this.#sql.moveToDeadLetters.run(status, reason, failedAt, userId, row.seq)
      this.#sql.deleteUpTo.run(userId, row.seq)
    })()

    this.#metrics?.callbackAttempts.inc({ outcome: 'dead_lettered' })
    this.#metrics?.deadLettered.inc()
    this.#logger.error(
      { userId, eventId: row.event_id, seq: row.seq, type: row.type, status, response: outcome.excerpt },
      'Django rejected a callback event for good; moved it to dead_letters'
    )
  }
}
