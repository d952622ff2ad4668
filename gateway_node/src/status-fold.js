// Folding of one message's status receipts into one `message.status` event.
//
// WhatsApp reports a sent message's progress as separate receipts. When
// several of them wait in the outbox together, the outbox posts one event
// with the highest status and lists the lower ones, with the time each
// happened, under `earlier`. `failed` is final and never folds.

const RANK = { sent: 1, delivered: 2, read: 3, played: 4 }

// Fields that identify the message. The folded event takes each from the
// other receipt when its own is null.
const IDENTITY_FIELDS = ['message_id', 'gateway_message_id', 'chat_jid']

/** Checks whether an event is a `message.status` receipt that may fold. */
export function isFoldableStatus (type, data) {
  return type === 'message.status' && Object.hasOwn(RANK, data?.status)
}

/**
 * Returns the index keys of a receipt of `userId`: one for its
 * `message_id` and one for its `gateway_message_id`, each when not null.
 */
export function statusKeys (userId, data) {
  const keys = []
  if (data.message_id != null) keys.push(JSON.stringify([userId, 'm', data.message_id]))
  if (data.gateway_message_id != null) keys.push(JSON.stringify([userId, 'g', data.gateway_message_id]))
  return keys
}

/**
 * Checks whether two receipts are of the same message: the same
 * `message_id` when both have one, otherwise the same `gateway_message_id`.
 */
export function isSameMessage (a, b) {
  if (a.message_id != null && b.message_id != null) return a.message_id === b.message_id
  return a.gateway_message_id != null && a.gateway_message_id === b.gateway_message_id
}

function earliest (first, second) {
  if (first === undefined) return second
  const firstMs = Date.parse(first)
  const secondMs = Date.parse(second)
  if (Number.isNaN(secondMs)) return first
  if (Number.isNaN(firstMs)) return second
  return secondMs < firstMs ? second : first
}

/**
 * Folds two receipts of one message into the data of one event. Each
 * argument is `{ data, occurredAt }`, where `occurredAt` is the
 * `occurred_at` of the event that carried the receipt, and `older` is the
 * one appended first.
 *
 * The data is that of the higher-ranked receipt (`newer` on a tie), with
 * null identity fields taken from the other. Each status's time is the
 * receipt's `timestamp`, or its event's `occurred_at` when the timestamp
 * is null, and the earliest wins when a status comes twice. `timestamp`
 * becomes the main status's time, and `earlier` maps each lower status to
 * its time.
 */
export function foldStatuses (older, newer) {
  const newerWins = RANK[newer.data.status] >= RANK[older.data.status]
  const higher = newerWins ? newer : older
  const lower = newerWins ? older : newer

  const data = { ...higher.data }
  for (const field of IDENTITY_FIELDS) {
    data[field] ??= lower.data[field] ?? null
  }

  const times = {}
  const listed = [
    ...Object.entries(lower.data.earlier ?? {}),
    ...Object.entries(higher.data.earlier ?? {}),
    [lower.data.status, lower.data.timestamp ?? lower.occurredAt],
    [higher.data.status, higher.data.timestamp ?? higher.occurredAt]
  ]
  for (const [status, time] of listed) {
    times[status] = earliest(times[status], time)
  }
  // The main status keeps its earliest time too, and a receipt without a
  // timestamp keeps the time its own event was recorded, not the fold's.
  data.timestamp = times[data.status]
  delete times[data.status]

  data.earlier = Object.fromEntries(
    Object.entries(times).sort(([a], [b]) => (RANK[a] ?? 0) - (RANK[b] ?? 0))
  )
  return data
}
