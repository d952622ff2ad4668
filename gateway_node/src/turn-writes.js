// One SQLite transaction for the writes of one event-loop turn.
//
// Under load, one turn of the event loop records many things: the acks of
// a whole /send/batch that waited for its sends, the next item's send
// record, the rows a callback response lets go. Committed one by one, each
// costs its own WAL append, and that I/O was most of the gateway's CPU per
// message. writeInTurn() runs a write inside a transaction that stays open
// until the turn ends (setImmediate) or until commitTurn() is called, so
// they share one commit.
//
// A write in the open transaction is visible at once to every read on the
// same connection, but it is not durable yet. The callers therefore commit
// before anything outside the process can depend on it:
// - a send record before its message goes to WhatsApp (SendStore.begin);
// - outbox rows before a request posts them (Outbox);
// - everything before an HTTP response leaves (a hook in app.js), so a
//   /send responds only once its record is `sent`.
// What a crash can lose is what the process has not let out yet: events of
// the current turn, as an event in flight between the engine and the
// gateway was before.
//
// When the turn's writes are lost, the failure listeners run, so that
// state kept in memory can be read again from the tables. That happens when
// a commit fails, and when SQLite rolls the whole transaction back after a
// failed statement (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM, SQLITE_BUSY).

const turns = new WeakMap()

function turnOf (db) {
  let turn = turns.get(db)
  if (!turn) {
    turn = {
      begin: db.prepare('BEGIN'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      immediate: null,
      // Counts the turns' transactions, so that a listener can tell which
      // turn was lost.
      id: 0,
      listeners: new Set()
    }
    turns.set(db, turn)
  }
  return turn
}

/**
 * Runs `fn` inside the turn's transaction on `db` and returns its result.
 * A transaction that someone else opened (db.transaction()) is joined
 * instead, and commits when its owner does.
 */
export function writeInTurn (db, fn) {
  const turn = turnOf(db)
  checkRolledBack(db, turn)
  if (!db.inTransaction) {
    turn.begin.run()
    turn.id += 1
    turn.immediate = setImmediate(() => commitDeferred(db, turn))
  }
  try {
    return fn()
  } catch (error) {
    checkRolledBack(db, turn, error)
    throw error
  }
}

/**
 * Commits the turn's transaction now, if one is open. Throws when the
 * commit fails, after rolling back and calling the lost-turn listeners.
 */
export function commitTurn (db) {
  const turn = turns.get(db)
  if (!turn?.immediate) return
  const error = checkRolledBack(db, turn) ?? commitOpen(db, turn)
  if (error) throw error
}

/**
 * Returns the id of the turn whose transaction is open on `db`, or null
 * when none is (a transaction that db.transaction() opened is not a turn's).
 */
export function openTurnId (db) {
  const turn = turns.get(db)
  return turn?.immediate && db.inTransaction ? turn.id : null
}

/** Calls `listener({ error, turnId })` after a turn's writes were rolled back. */
export function onTurnLost (db, listener) {
  turnOf(db).listeners.add(listener)
}

function commitDeferred (db, turn) {
  if (!db.open || checkRolledBack(db, turn)) return
  commitOpen(db, turn)
}

// Commits the open turn and returns the error when the commit failed.
function commitOpen (db, turn) {
  clearImmediate(turn.immediate)
  turn.immediate = null
  try {
    turn.commit.run()
  } catch (error) {
    lost(db, turn, error)
    return error
  }
  return undefined
}

// Ends a turn whose transaction SQLite rolled back after a failed
// statement, and returns the error for it (undefined when none was).
function checkRolledBack (db, turn, cause) {
  if (!turn.immediate || db.inTransaction) return undefined
  clearImmediate(turn.immediate)
  turn.immediate = null
  const error = cause ?? new Error('SQLite rolled back the writes of this event loop turn after a failed statement')
  lost(db, turn, error)
  return error
}

function lost (db, turn, error) {
  if (db.inTransaction) {
    try {
      turn.rollback.run()
    } catch {
      // After some errors SQLite has rolled back by itself already.
    }
  }
  for (const listener of turn.listeners) listener({ error, turnId: turn.id })
}
