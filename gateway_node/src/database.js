// The gateway's SQLite database: outbox, dead letters and send records.
//
// WAL lets the dispatcher read while sessions append events. The default
// synchronous=NORMAL keeps every committed transaction across a process
// crash (SIGKILL, out-of-memory kill), because a commit is in the WAL file
// before the call returns. Only a power loss or kernel crash can undo the
// last commits. FULL (WA_DB_SYNCHRONOUS=full) also survives those, but it
// costs an fsync on every commit, and better-sqlite3 runs that fsync on the
// event loop, where it stalls every session on the node. The writes of one
// event loop turn share a commit (turn-writes.js).

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

import Database from 'better-sqlite3'

const SCHEMA_VERSION = 1

const SCHEMA = `
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  user_id INTEGER NOT NULL,
  type TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_user_seq ON outbox (user_id, seq);

CREATE TABLE IF NOT EXISTS dead_letters (
  seq INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  user_id INTEGER NOT NULL,
  type TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  data TEXT NOT NULL,
  http_status INTEGER,
  reason TEXT NOT NULL,
  failed_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS sends (
  user_id INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('sending', 'sent')),
  gateway_message_id TEXT,
  to_jid TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, message_id)
);
CREATE INDEX IF NOT EXISTS sends_gateway_message ON sends (user_id, gateway_message_id);
CREATE INDEX IF NOT EXISTS sends_created_at ON sends (created_at);
`

/** Opens (and creates when missing) WA_DATA_DIR/gateway.db. */
export function openDatabase ({ dataDir, synchronous = 'normal' }) {
  mkdirSync(dataDir, { recursive: true })
  const db = new Database(join(dataDir, 'gateway.db'))

  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
  db.pragma('foreign_keys = ON')
  // A second gateway process on the same data dir waits briefly for the
  // write lock instead of failing at once.
  db.pragma('busy_timeout = 5000')

  const version = db.pragma('user_version', { simple: true })
  if (version > SCHEMA_VERSION) {
    db.close()
    throw new Error(
      `${join(dataDir, 'gateway.db')} has schema version ${version}, newer than ` +
        `this gateway's ${SCHEMA_VERSION}; run a newer gateway or point WA_DATA_DIR elsewhere.`
    )
  }
  db.exec(SCHEMA)
  db.pragma(`user_version = ${SCHEMA_VERSION}`)
  return db
}
