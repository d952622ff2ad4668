// Prometheus metrics, served by GET /metrics.
//
// Each app gets its own registry, so tests can build several apps in one
// process. Gauges that mirror state (sessions, outbox depth) are read at
// scrape time through the callbacks passed in.

import client from 'prom-client'

export const SESSION_STATES = [
  'starting',
  'qr_pending',
  'qr_expired',
  'connected',
  'disconnected',
  'logged_out',
  'failed',
  'stopped'
]

/**
 * Creates the registry and its metrics. `read` contains callbacks:
 * `sessionCounts()` → { [state]: count }, `outboxPending()` → number,
 * `deadLetterCount()` → number.
 */
export function createMetrics ({ read, processMetrics = false }) {
  const register = new client.Registry()
  if (processMetrics) client.collectDefaultMetrics({ register })

  const metrics = {
    register,

    sessions: new client.Gauge({
      name: 'wa_gateway_sessions',
      help: 'Sessions held by this gateway, by state.',
      labelNames: ['state'],
      registers: [register],
      collect () {
        const counts = read.sessionCounts()
        for (const state of SESSION_STATES) this.set({ state }, counts[state] ?? 0)
      }
    }),

    sends: new client.Counter({
      name: 'wa_gateway_sends_total',
      help: 'Messages handed to WhatsApp through POST /send and POST /send/batch.',
      registers: [register]
    }),

    sendFailures: new client.Counter({
      name: 'wa_gateway_send_failures_total',
      help: 'Messages of POST /send and POST /send/batch that were not sent, by error code.',
      labelNames: ['code'],
      registers: [register]
    }),

    events: new client.Counter({
      name: 'wa_gateway_events_total',
      help: 'Callback events written to the outbox, by type.',
      labelNames: ['type'],
      registers: [register]
    }),

    statusesFolded: new client.Counter({
      name: 'wa_gateway_statuses_folded_total',
      help: 'message.status receipts folded into a pending receipt of the same message instead of becoming an event of their own.',
      registers: [register]
    }),

    callbackAttempts: new client.Counter({
      name: 'wa_gateway_callback_attempts_total',
      help: 'Callback batches posted to Django, by outcome (delivered, retried, split, dead_lettered).',
      labelNames: ['outcome'],
      registers: [register]
    }),

    outboxPending: new client.Gauge({
      name: 'wa_gateway_outbox_pending',
      help: 'Callback events waiting for Django to accept them.',
      registers: [register],
      collect () {
        this.set(read.outboxPending())
      }
    }),

    deadLetters: new client.Gauge({
      name: 'wa_gateway_dead_letters',
      help: 'Callback events Django rejected for good; kept in the dead_letters table.',
      registers: [register],
      collect () {
        this.set(read.deadLetterCount())
      }
    }),

    deadLettered: new client.Counter({
      name: 'wa_gateway_dead_lettered_total',
      help: 'Callback events moved to the dead_letters table since start.',
      registers: [register]
    }),

    reconnects: new client.Counter({
      name: 'wa_gateway_reconnects_total',
      help: 'Connection drops after which the client reconnects by itself.',
      registers: [register]
    }),

    restoreFailures: new client.Counter({
      name: 'wa_gateway_restore_failures_total',
      help: 'Saved sessions that could not be restored and had their auth wiped.',
      registers: [register]
    })
  }

  for (const outcome of ['delivered', 'retried', 'split', 'dead_lettered']) {
    metrics.callbackAttempts.inc({ outcome }, 0)
  }
  return metrics
}
