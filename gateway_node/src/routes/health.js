// GET /healthz and GET /metrics, both served without a signature.

const healthReply = {
  type: 'object',
  required: ['status', 'engine', 'sessions', 'outbox_pending', 'dead_letters'],
  properties: {
    status: { type: 'string' },
    engine: { type: 'string' },
    sessions: { type: 'integer' },
    live_sessions: { type: 'integer' },
    max_sessions: { type: 'integer' },
    sessions_by_state: { type: 'object', additionalProperties: { type: 'integer' } },
    outbox_pending: { type: 'integer' },
    dead_letters: {
      type: 'object',
      required: ['count', 'latest_event_ids'],
      properties: {
        count: { type: 'integer' },
        latest_event_ids: { type: 'array', items: { type: 'string' } }
      }
    },
    uptime_seconds: { type: 'number' }
  }
}

export default async function healthRoutes (app, { sessions, outbox, metrics, config }) {
  const publicRoute = { public: true }

  app.get('/healthz', {
    config: publicRoute,
    schema: { response: { 200: healthReply } }
  }, async () => ({
    status: 'ok',
    engine: config.engine,
    sessions: sessions.size,
    live_sessions: sessions.liveCount(),
    max_sessions: config.maxSessions,
    sessions_by_state: sessions.sessionCounts(),
    outbox_pending: outbox.pendingCount(),
    dead_letters: outbox.deadLetterSummary(),
    uptime_seconds: Math.round(process.uptime())
  }))

  app.get('/metrics', { config: publicRoute }, async (request, reply) => {
    reply.header('content-type', metrics.register.contentType)
    return metrics.register.metrics()
  })
}
