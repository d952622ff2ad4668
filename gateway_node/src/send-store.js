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
// commits before any response leaves.

import { commitTurn, writeInTurn } from './turn-writes.js'

export class SendStore {
  #db
  #sql
  #ttlMs
  #clock

  constructor ({ db, ttlMs, clock = Date.now }) {
    this.#db = db
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
  }

  find (userId, messageId) {
    return this.#sql.find.get(userId, messageId)
  }

  /** Claims `messageId` for one send; false when a row already exists. */
  begin (userId, messageId, requestHash) {
    const claimed = this.#sql.begin.run(userId, messageId, requestHash, this.#clock()).changes === 1
    commitTurn(this.#db)
    return claimed
  }

  markSent (userId, messageId, gatewayMessageId, toJid) {
    writeInTurn(this.#db, () => this.#sql.markSent.run(gatewayMessageId, toJid, userId, messageId))
  }

  /** Drops a claim whose send certainly did not reach WhatsApp. */
  forget (userId, messageId) {
    writeInTurn(this.#db, () => this.#sql.forget.run(userId, messageId))
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
    return this.#sql.purge.run(this.#clock() - this.#ttlMs).changes
  }
}
