// Durable outbox of callback events, and the dispatcher that posts them to
// Django.
//
// An event is committed to SQLite at the end of the event loop turn that
// appended it, with that turn's other writes (turn-writes.js), and always
// before it is posted. Its row is deleted only after Django responds 2xx, so
// neither a Django outage nor a gateway crash loses it. Each user's events
// form a lane that is posted in `seq` order. A request starts from the lane
// whose turn it is and is filled from other ready lanes, up to MAX_BATCH
// events, so many users with a few events each share one request. Each
// lane's events are contiguous in the body, and a lane is in one request at
// a time, which keeps every user's events in order.
//
// When Django rejects or fails a request that carries several lanes,
// nothing is dead-lettered. Each of those lanes posts alone until it is
// delivered again, so a bad event is isolated within its own lane and the
// other users' events are not held up. Failures that mean Django itself is
// unreachable pause every lane, so an outage costs one probe per backoff
// step instead of one request per user.
//
// Under load, requests start at most once per `lingerMs` unless the pending
// events fill a whole request, so events that come in a stream share
// requests instead of each taking one. An event that comes after a quiet
// spell goes at once.
//
// A `message.status` receipt folds into an earlier receipt of the same
// message that is still pending and not in a request. The two become one
// event with the higher status and an `earlier` map of the lower statuses
// and their times (see status-fold.js). The folded event is a new row at
// the end of the user's lane, inserted in the same transaction that
// deletes the earlier row, so after a crash the table contains either the
// earlier row or the folded one. A row stops being foldable once it is
// taken into a request, even if that request fails. After a restart every
// pending receipt is foldable again, and so is a receipt requeued from the
// dead letters. That does no harm: Django keeps the earliest time of each
// status and never moves a status back. So while Django is slow or down,
// one message's sent, delivered and read receipts can cost Django one
// event instead of three.

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'

import { SIGNATURE_HEADER, sign } from './signing.js'
import { foldStatuses, isFoldableStatus, isSameMessage, statusKeys } from './status-fold.js'
import { commitTurn, onTurnLost, writeInTurn } from './turn-writes.js'

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
  #lingerMs
  #logger
  #metrics
  #fetch
  #random
  #clock

  // userId -> { attempts, retryAt, limit, postAlone }, present while the
  // user has pending events. Map order is the order lanes get their turn.
  #lanes = new Map()
  // Users whose events are in a request that has not settled.
  #inFlight = new Set()
  // The AbortController of each request in flight.
  #requests = new Set()
  #endpoint = { attempts: 0, retryAt: 0 }
  #running = false
  #closed = false
  #passQueued = false
  #timer = null
  #timerAt = Infinity
  #deadline = Infinity
  #draining = false
  // Events in the outbox, and those of them in requests in flight, kept in
  // step with the table so that a pass can tell without a query whether the
  // waiting events fill a request.
  #pendingEvents = 0
  #inFlightEvents = 0
  #lastStartAt = -Infinity
  // Pending `message.status` rows that a later receipt may fold into:
  // index key (see statusKeys) -> seq, and seq -> { keys, data, occurredAt }.
  // A row leaves both maps when it is folded or taken into a request.
  #foldable = new Map()
  #foldableRows = new Map()

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
    this.#lingerMs = callback.lingerMs ?? 0
    this.#logger = logger
    this.#metrics = metrics
    this.#fetch = fetch
    this.#random = random
    this.#clock = clock
    this.#sql = this.#prepare()

    for (const { user_id: userId } of this.#sql.lanes.all()) this.#openLane(userId)
    this.#pendingEvents = this.pendingCount()
    // No request is in flight yet, so every pending receipt may fold.
    for (const row of this.#sql.pendingStatuses.all()) this.#indexStoredRow({ ...row, type: 'message.status' })
    onTurnLost(db, ({ error }) => this.#turnLost(error))
  }

  // Reads the count and the lanes again, and drops from the fold index the
  // receipts whose rows the lost turn took, since their seq may be reused.
  #turnLost (error) {
    this.#logger.error({ err: error }, 'the outbox writes of an event loop turn were rolled back; its events are lost')
    try {
      this.#pendingEvents = this.pendingCount()
      for (const { user_id: userId } of this.#sql.lanes.all()) this.#openLane(userId)
      const stored = new Set(this.#sql.pendingStatuses.all().map((row) => row.seq))
      for (const seq of [...this.#foldableRows.keys()]) {
        if (!stored.has(seq)) this.#unindexStatus(seq)
      }
    } catch (readError) {
      // A stale entry could fold a receipt into another event's row, so the
      // index starts afresh.
      this.#foldable.clear()
      this.#foldableRows.clear()
      this.#logger.error({ err: readError }, 'reading the outbox after a rolled-back turn failed')
    }
    this.#schedule()
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
      // Those of a JSON array of user ids that still have pending events.
      usersWithPending: db.prepare(
        'SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM outbox WHERE user_id = json_each.value)'
      ).pluck(),
      deleteUpTo: db.prepare('DELETE FROM outbox WHERE user_id = ? AND seq <= ?'),
      deleteOne: db.prepare('DELETE FROM outbox WHERE seq = ? AND event_id = ?'),
      pendingStatuses: db.prepare(
        "SELECT seq, event_id, user_id, occurred_at, data FROM outbox WHERE type = 'message.status' ORDER BY seq"
      ),
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
   * Records one event in the turn's transaction and returns it as it will
   * be posted. `seq` is the row id. AUTOINCREMENT never reuses the number of
   * a committed row, even after the row is deleted, so it keeps growing
   * across restarts. A row of a lost turn frees its number again. A
   * `message.status` receipt may fold into an earlier pending one, and then
   * the returned event is the folded one.
   */
  append (userId, type, data) {
    // Inside the turn, because entering it notices a turn that SQLite
    // rolled back and prunes the fold index before it is read.
    return writeInTurn(this.#db, () => this.#record(userId, type, data))
  }

  #record (userId, type, data) {
    const occurredAt = new Date(this.#clock()).toISOString()
    const foldable = isFoldableStatus(type, data)
    const older = foldable ? this.#findFoldable(userId, data) : undefined
    const posted = older
      ? foldStatuses(older, { data, occurredAt })
      : data
    const event = { event_id: randomUUID(), seq: 0, type, user_id: userId, occurred_at: occurredAt, data: posted }

    // The older row is deleted in the savepoint that inserts the folded one,
    // so a crash loses neither receipt. Matching its event id keeps a stale
    // seq from deleting another event.
    const insert = () => this.#sql.insert.run(
      event.event_id, userId, type, event.occurred_at, JSON.stringify(event.data)
    )
    const { seq, deleted } = older
      ? this.#db.transaction(() => {
        const inserted = insert()
        return { seq: Number(inserted.lastInsertRowid), deleted: this.#sql.deleteOne.run(older.seq, older.eventId).changes }
      })()
      : { seq: Number(insert().lastInsertRowid), deleted: 0 }
    event.seq = seq
    this.#pendingEvents += 1 - deleted

    if (older) {
      this.#unindexStatus(older.seq)
      this.#metrics?.statusesFolded.inc()
      this.#logger.debug({ userId, seq, foldedSeq: older.seq }, 'folded a status receipt into a pending one')
    }
    if (foldable) this.#indexStatus(userId, seq, event.event_id, event.data, occurredAt)
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
    const rows = writeInTurn(this.#db, this.#db.transaction(() => {
      const found = userId === null
        ? this.#sql.deadLetters.all()
        : this.#sql.deadLettersOfUser.all(userId)
      const moved = []
      for (const row of found) {
        const inserted = this.#sql.insert.run(row.event_id, row.user_id, row.type, row.occurred_at, row.data)
        this.#sql.deleteDeadLetter.run(row.seq)
        moved.push({ ...row, seq: Number(inserted.lastInsertRowid) })
      }
      return moved
    }))
    if (rows.length === 0) return 0
    this.#pendingEvents += rows.length
    // A requeued receipt is pending like any other, so later ones fold into it.
    for (const row of rows) this.#indexStoredRow(row)

    const users = [...new Set(rows.map((row) => row.user_id))]
    for (const user of users) this.#openLane(user)
    this.#logger.warn({ count: rows.length, user_ids: users }, 'requeued dead letters')
    this.#schedule()
    return rows.length
  }

  pendingCount () {
    return this.#sql.pending.get().count
  }

  // Returns the pending receipt, not in a request, that a receipt of
  // `userId` folds into, as `{ seq, data, occurredAt }`, or undefined.
  #findFoldable (userId, data) {
    for (const key of statusKeys(userId, data)) {
      const row = this.#foldableRows.get(this.#foldable.get(key))
      if (row && isSameMessage(row.data, data)) return row
    }
    return undefined
  }

  // Indexes a pending row read from the database if it is a foldable receipt.
  #indexStoredRow (row) {
    const data = JSON.parse(row.data)
    if (isFoldableStatus(row.type, data)) this.#indexStatus(row.user_id, row.seq, row.event_id, data, row.occurred_at)
  }

  // When two pending rows share a key (after a restart, or when their ids
  // disagree), the later one owns it and the earlier one no longer folds.
  #indexStatus (userId, seq, eventId, data, occurredAt) {
    const keys = statusKeys(userId, data)
    for (const key of keys) this.#foldable.set(key, seq)
    this.#foldableRows.set(seq, { seq, eventId, keys, data, occurredAt })
  }

  #unindexStatus (seq) {
    const row = this.#foldableRows.get(seq)
    if (!row) return
    this.#foldableRows.delete(seq)
    for (const key of row.keys) {
      if (this.#foldable.get(key) === seq) this.#foldable.delete(key)
    }
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
      if (this.#requests.size === 0 && !this.#hasLaneReadyBefore(deadline)) break
      await sleep(Math.min(20, Math.max(1, deadline - this.#clock())))
    }
    await this.close()
    return this.pendingCount()
  }

  /**
   * Stops dispatching and aborts posts in flight; their events stay pending.
   * The writes of the current turn commit.
   */
  async close () {
    this.#closed = true
    this.#running = false
    this.#clearTimer()
    for (const controller of this.#requests) controller.abort()
    while (this.#requests.size) await sleep(5)
    try {
      commitTurn(this.#db)
    } catch (error) {
      this.#logger.error({ err: error }, 'committing the outbox at close failed; the events of the last turn are lost')
    }
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
      this.#lanes.set(userId, { attempts: 0, retryAt: 0, limit: MAX_BATCH, postAlone: false })
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
    // A clock set back would otherwise stretch the linger by the whole step.
    this.#lastStartAt = Math.min(this.#lastStartAt, now)
    if (this.#endpoint.retryAt > now) {
      this.#wakeAt(this.#endpoint.retryAt)
      return
    }
    // While Django is failing, one request probes it at a time.
    const slots = this.#endpoint.attempts > 0 ? 1 : this.#concurrency

    let nextRetryAt = Infinity
    for (const [userId, lane] of this.#lanes) {
      if (this.#requests.size >= slots) break
      if (this.#inFlight.has(userId)) continue
      if (lane.retryAt > now) {
        nextRetryAt = Math.min(nextRetryAt, lane.retryAt)
        continue
      }
      const lingerEnd = this.#lastStartAt + this.#lingerMs
      if (now < lingerEnd && !this.#draining && this.#pendingEvents - this.#inFlightEvents < MAX_BATCH) {
        nextRetryAt = Math.min(nextRetryAt, lingerEnd)
        break
      }
      const started = this.#requests.size
      this.#deliver(userId, lane, now)
      if (this.#requests.size > started) this.#lastStartAt = now
    }
    if (nextRetryAt < Infinity) this.#wakeAt(nextRetryAt)
  }

  // Everything up to the first `await` runs before #pass goes on, so the
  // lanes of this request are in flight before the next request is filled.
  async #deliver (userId, lane, now) {
    const controller = new AbortController()
    this.#requests.add(controller)
    const parts = []

    try {
      this.#fill(parts, userId, lane, now)
      if (parts.length === 0) return
      // An event is committed before it is posted.
      commitTurn(this.#db)
      const rows = parts.flatMap((part) => part.rows)
      const outcome = await this.#post(rows, controller.signal)
      if (controller.signal.aborted) return
      this.#settle(parts, outcome)
    } catch (error) {
      this.#logger.error(
        { err: error, userIds: parts.map((part) => part.userId) },
        'callback dispatch failed unexpectedly; retrying with backoff'
      )
      for (const part of parts) {
        part.lane.postAlone = true
        this.#backOff(part.lane, {})
      }
    } finally {
      this.#requests.delete(controller)
      this.#release(parts)
      this.#schedule()
    }
  }

  /**
   * Takes lanes into a request: first `userId`, then, unless it posts
   * alone, the other lanes ready at `now` in turn order, until the request
   * contains MAX_BATCH events. Each lane gives up to its `limit` events and
   * goes into `parts` as `{ userId, lane, rows }`, in flight and moved to
   * the back of the turn order. A lane with no events left is removed.
   */
  #fill (parts, userId, lane, now) {
    let room = MAX_BATCH
    for (const [takenId, taken] of this.#candidates(userId, lane, now)) {
      // In `parts` before the read, so a failed read backs this lane off.
      const part = { userId: takenId, lane: taken, rows: [] }
      parts.push(part)
      this.#inFlight.add(takenId)
      this.#lanes.delete(takenId)
      this.#lanes.set(takenId, taken)

      part.rows = this.#sql.batch.all(takenId, Math.min(taken.limit, room))
      // Django may apply these rows even if the request fails, so no later
      // receipt folds into them.
      for (const row of part.rows) this.#unindexStatus(row.seq)
      if (part.rows.length === 0) {
        parts.pop()
        this.#inFlight.delete(takenId)
        this.#lanes.delete(takenId)
        continue
      }
      room -= part.rows.length
      this.#inFlightEvents += part.rows.length
      if (room === 0) break
    }
  }

  // A lane moved to the back is met again later in the same loop, and it
  // is skipped then because it is in flight.
  * #candidates (userId, lane, now) {
    yield [userId, lane]
    if (lane.postAlone) return
    for (const [otherId, other] of this.#lanes) {
      if (otherId === userId || this.#inFlight.has(otherId)) continue
      if (other.postAlone || other.retryAt > now) continue
      yield [otherId, other]
    }
  }

  #release (parts) {
    if (parts.length === 0) return
    for (const part of parts) this.#inFlightEvents -= part.rows.length
    const userIds = parts.map((part) => part.userId)
    for (const userId of userIds) this.#inFlight.delete(userId)
    const pending = new Set(this.#sql.usersWithPending.all(JSON.stringify(userIds)))
    for (const userId of userIds) {
      if (!pending.has(userId)) this.#lanes.delete(userId)
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

  #settle (parts, outcome) {
    const kind = classify(outcome)
    const lanes = parts.map((part) => part.lane)
    // Each lane's rows are in `seq` order, so these are the lowest and the
    // highest seq of the request.
    const context = {
      userIds: parts.map((part) => part.userId),
      events: parts.reduce((count, part) => count + part.rows.length, 0),
      firstSeq: Math.min(...parts.map((part) => part.rows[0].seq)),
      lastSeq: Math.max(...parts.map((part) => part.rows.at(-1).seq)),
      status: outcome.status
    }

    if (kind === 'delivered') {
      // Counted once every DELETE succeeded: a failed one rolls back the
      // others, and the events stay pending.
      const deleted = writeInTurn(this.#db, this.#db.transaction(() => {
        let count = 0
        for (const { userId, rows } of parts) {
          count += this.#sql.deleteUpTo.run(userId, rows.at(-1).seq).changes
        }
        return count
      }))
      this.#pendingEvents -= deleted
      for (const lane of lanes) {
        lane.attempts = 0
        lane.retryAt = 0
        lane.limit = Math.min(MAX_BATCH, lane.limit * 2)
        lane.postAlone = false
      }
      this.#endpoint = { attempts: 0, retryAt: 0 }
      this.#metrics?.callbackAttempts.inc({ outcome: 'delivered' })
      this.#logger.debug(context, 'callback batch delivered')
      return
    }

    if (kind === 'rejected') {
      this.#reject(parts, outcome, context)
      return
    }

    this.#metrics?.callbackAttempts.inc({ outcome: 'retried' })
    let attempt
    let delay
    let scope = 'all users'
    if (kind === 'endpoint') {
      delay = this.#backOff(this.#endpoint, outcome)
      attempt = this.#endpoint.attempts
    } else {
      // Each lane backs off on its own counters and then posts alone, so
      // a user whose events make Django fail does not delay other users.
      // The log line shows the lowest delay and the highest attempt count.
      delay = Infinity
      attempt = 0
      scope = parts.length > 1 ? 'each user' : 'this user'
      for (const lane of lanes) {
        lane.postAlone = true
        delay = Math.min(delay, this.#backOff(lane, outcome))
        attempt = Math.max(attempt, lane.attempts)
      }
    }
    this.#logger.warn({
      ...context,
      error: describe(outcome.error),
      attempt,
      retryInMs: delay,
      scope,
      response: outcome.excerpt
    }, this.#draining ? 'callback delivery failed; events stay pending for the next start' : 'callback delivery failed; will retry')
  }

  // Every lane of a rejected request posts alone until it is delivered
  // again. With several lanes nothing is dead-lettered yet, because each
  // lane's own request then shows whether it contains the rejected event.
  #reject (parts, outcome, context) {
    for (const part of parts) part.lane.postAlone = true
    if (parts.length > 1) {
      this.#metrics?.callbackAttempts.inc({ outcome: 'split' })
      this.#logger.warn({ ...context, response: outcome.excerpt }, 'Django rejected a callback batch; splitting it')
      return
    }

    const [{ userId, lane, rows }] = parts
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

    this.#pendingEvents -= writeInTurn(this.#db, this.#db.transaction(() => {
      this.#sql.moveToDeadLetters.run(status, reason, failedAt, userId, row.seq)
      return this.#sql.deleteUpTo.run(userId, row.seq).changes
    }))

    this.#metrics?.callbackAttempts.inc({ outcome: 'dead_lettered' })
    this.#metrics?.deadLettered.inc()
    this.#logger.error(
      { userId, eventId: row.event_id, seq: row.seq, type: row.type, status, response: outcome.excerpt },
      'Django rejected a callback event for good; moved it to dead_letters'
    )
  }
}
