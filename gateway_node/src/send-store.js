// Records of messages sent through POST /send, in the gateway database.
//
// A row is written as `sending` before the message goes to WhatsApp and
// becomes `sent` with WhatsApp's id before /send responds. The same row makes
// /send idempotent on Django's message_id (also across restarts), tells
// echoes of our own sends apart from messages typed on the phone, and puts
// Django's message_id on acks. Rows expire after WA_SEND_RECORD_TTL_HOURS.
//
// A claim commits before it returns, because the message goes to WhatsApp
// next. The other writes join the turn's transaction (turn-writes.js), which
// commits before any response leaves. When that turn is lost, the `sent`
// marks and dropped claims it contained are written again one by one, since
// the messages went out (or certainly did not) all the same.

import { commitTurn, onTurnLost, openTurnId, writeInTurn } from './turn-writes.js'

export class SendStore {
  #db
  #sql
  #ttlMs
  #clock
  #logger
  // The marks and drops of the open turn, as [statement name, parameters].
  #uncommitted = { turnId: null, writes: [] }
  // Those of a lost turn that failed again, tried with each later write.
  #unwritten = []

  constructor ({ db, ttlMs, clock = Date.now, logger }) {
    this.#db = db
    this.#logger = logger
    this.#ttlMs = ttlMs
    this.#clock = clock
    this.#sql = {
      find: db.prepare('SELECT * FROM sends WHERE user_id = ? AND message_id = ?'),
      begin: db.prepare(
        'INSERT OR IGNORE INTO sends (user_id, message_id, request_hash, state, created_at) ' +
          "VALUES (?, ?, ?, 'sending', ?)"
      ),
      markSent: db.prepare(
        "UPDATE sends SET state = 'sent', gateway_message_id = ?, to_jid = ? " +
          'WHERE user_id = ? AND message_id = ?'
      ),
      forget: db.prepare("DELETE FROM sends WHERE user_id = ? AND message_id = ? AND state = 'sending'"),
      byGatewayId: db.prepare(
        "SELECT message_id FROM sends WHERE user_id = ? AND gateway_message_id = ? AND state = 'sent'"
      ),
      purge: db.prepare('DELETE FROM sends WHERE created_at < ?')
    }
    onTurnLost(db, ({ turnId }) => this.#writeLostAgain(turnId))
  }

  #writeInTurn (name, params) {
    this.#writeUnwritten()
    this.#writeTracked(name, params)
  }

  #writeTracked (name, params) {
    writeInTurn(this.#db, () => this.#sql[name].run(...params))
    const turnId = openTurnId(this.#db)
    if (turnId === null) return
    if (this.#uncommitted.turnId !== turnId) this.#uncommitted = { turnId, writes: [] }
    this.#uncommitted.writes.push([name, params])
  }

  // Both statements may run twice: a mark sets the same values, and a drop
  // deletes only a row still `sending`, which blocks any new claim.
  #writeLostAgain (turnId) {
    const { turnId: writesTurnId, writes } = this.#uncommitted
    this.#uncommitted = { turnId: null, writes: [] }
    if (writesTurnId !== turnId) return
    for (const [name, params] of writes) {
      try {
        this.#sql[name].run(...params)
      } catch (error) {
        // Until it is written, the record stays `sending`: a repeat of the
        // message gets GW_ERR_SEND_IN_DOUBT and its acks carry no message_id.
        this.#logger?.error({ err: error, userId: params.at(-2), messageId: params.at(-1) }, `writing a lost ${name} of a send record again failed; retrying with the next write`)
        this.#unwritten.push([name, params])
      }
    }
  }

  #writeUnwritten () {
    while (this.#unwritten.length > 0) {
      const [name, params] = this.#unwritten[0]
      try {
        this.#writeTracked(name, params)
      } catch {
        // Still failing; the error was logged when the write was queued.
        return
      }
      this.#unwritten.shift()
    }
  }

  find (userId, messageId) {
    return this.#sql.find.get(userId, messageId)
  }

  /** Claims `messageId` for one send; false when a row already exists. */
  begin (userId, messageId, requestHash) {
    this.#writeUnwritten()
    const claim = () => this.#sql.begin.run(userId, messageId, requestHash, this.#clock())
    const claimed = writeInTurn(this.#db, claim).changes === 1
    commitTurn(this.#db)
    return claimed
  }

  markSent (userId, messageId, gatewayMessageId, toJid) {
    this.#writeInTurn('markSent', [gatewayMessageId, toJid, userId, messageId])
  }

  /** Drops a claim whose send certainly did not reach WhatsApp. */
  forget (userId, messageId) {
    this.#writeInTurn('forget', [userId, messageId])
  }

  /** Django's message_id for a message we sent, or null. */
  messageIdFor (userId, gatewayMessageId) {
    if (!gatewayMessageId) return null
    return this.#sql.byGatewayId.get(userId, gatewayMessageId)?.message_id ?? null
  }

  isOwnSend (userId, gatewayMessageId) {
    return this.messageIdFor(userId, gatewayMessageId) !== null
  }

  /** Deletes records older than the TTL; returns how many. */
  purgeExpired () {
    return writeInTurn(this.#db, () => this.#sql.purge.run(this.#clock() - this.#ttlMs)).changes
  }
}
