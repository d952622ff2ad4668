// Records of messages sent through POST /send, in the gateway database.
//
// A row is written as `sending` before the message goes to WhatsApp and
// becomes `sent` with WhatsApp's id before the response that reports it.
// The same row makes sends idempotent on Django's message_id (also across
// restarts), distinguishes echoes of our own sends from messages typed on
// the phone, and puts Django's message_id on acks. Rows expire after
// WA_SEND_RECORD_TTL_HOURS.

import { TtlCache } from './engines/ttl-cache.js'

// The latest sends whose ids stay in memory, so that their echo and their
// first acks, which come within seconds, need no query. Later acks, and
// acks of sends from before a restart, are looked up in SQLite. One entry
// takes about 200 bytes of heap with a 36-character message_id (heapUsed
// after 100,000 entries, Node 20), so the cache stays near 200 KiB however
// many sessions the gateway holds.
export const RECENT_SENDS_MAX = 1024

export class SendStore {
  #sql
  #ttlMs
  #clock
  // `${userId}:${gatewayMessageId}` -> Django's message_id.
  #recent

  constructor ({ db, ttlMs, clock = Date.now, recentMax = RECENT_SENDS_MAX }) {
    this.#ttlMs = ttlMs
    this.#clock = clock
    this.#recent = new TtlCache({ ttlMs, maxEntries: recentMax, now: clock })
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
    return this.#sql.begin.run(userId, messageId, requestHash, this.#clock()).changes === 1
  }

  markSent (userId, messageId, gatewayMessageId, toJid) {
    this.#sql.markSent.run(gatewayMessageId, toJid, userId, messageId)
    if (gatewayMessageId) this.#recent.set(`${userId}:${gatewayMessageId}`, messageId)
  }

  /** Drops a claim whose send certainly did not reach WhatsApp. */
  forget (userId, messageId) {
    this.#sql.forget.run(userId, messageId)
  }

  /**
   * Returns Django's message_id for a message we sent, or null. Recent sends
   * are looked up in memory, and others, those from before a restart
   * included, in SQLite.
   */
  messageIdFor (userId, gatewayMessageId) {
    if (!gatewayMessageId) return null
    const recent = this.#recent.get(`${userId}:${gatewayMessageId}`)
    if (recent !== undefined) return recent
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
