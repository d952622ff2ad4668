// Entry point: reads the configuration, listens, restores saved sessions,
// and shuts down gracefully on SIGTERM or SIGINT.
//
// Shutdown order: stop taking requests, stop every WhatsApp client without
// logging it out (auth stays, so the next start restores it), post the
// outbox as far as Django accepts within WA_SHUTDOWN_TIMEOUT_MS, exit 0.
// Events still pending are sent after the next start.

import closeWithGrace from 'close-with-grace'

import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { createLogger } from './logger.js'

// Slack on top of WA_SHUTDOWN_TIMEOUT_MS before close-with-grace gives up
// and exits 1.
const SHUTDOWN_SLACK_MS = 5000

function readConfig () {
  try {
    return loadConfig()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    process.stderr.write(`${error.message}\n`)
    process.exit(2)
  }
}

async function main () {
  const config = readConfig()
  const logger = createLogger({ level: config.logLevel })

  const app = await buildApp(config, { logger, processMetrics: true })
  // The same limits as Fastify's reference service: a slow or stuck client
  // cannot hold a socket for ever.
  app.server.requestTimeout = 60_000
  app.server.headersTimeout = 15_000
  app.server.keepAliveTimeout = 10_000
  app.server.timeout = 120_000

  closeWithGrace({
    delay: config.shutdownTimeoutMs + SHUTDOWN_SLACK_MS,
    logger: { error: (message) => logger.error(message) }
  }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'gateway stopping after an uncaught error')
    else logger.info({ signal }, 'gateway stopping')
    await app.close()
    logger.info('gateway stopped')
  })

  await app.listen({ host: config.host, port: config.port })
  logger.info({
    engine: config.engine,
    dataDir: config.dataDir,
    callbackUrl: config.callback.url,
    maxSessions: config.maxSessions,
    developmentSecret: config.usesDevelopmentSecret
  }, 'gateway started')

  app.gateway.sessions.restoreAll().catch((error) => {
    logger.error({ err: error }, 'restoring saved sessions failed')
  })
}

main().catch((error) => {
  process.stderr.write(`wa-gateway failed to start: ${error.stack ?? error}\n`)
  process.exit(1)
})
