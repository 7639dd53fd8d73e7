// The only file with side effects: reads process.env once, builds the app, listens, and shuts down
// gracefully. With no ATLAS_BASE_URL it starts the sandbox upstream in-process (the embedded default).
import closeWithGrace from 'close-with-grace'
import { loadConfig, type Config } from './config.js'
import { buildApp } from './app.js'
import { startSandbox, type Sandbox } from './sandbox/index.js'

async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    process.stderr.write(`atlas-gateway: invalid setting: ${(err as Error).message}\n`)
    process.exit(1)
  }

  let sandbox: Sandbox | undefined
  if (config.ATLAS_BASE_URL === '') {
    sandbox = await startSandbox({ host: '127.0.0.1', port: 0 })
    const writer = sandbox.users.write
    config = {
      ...config,
      ATLAS_BASE_URL: sandbox.baseUrl,
      ATLAS_TOKEN: sandbox.tokens.write,
      ATLAS_USERNAME: writer?.username ?? '',
      ATLAS_PASSWORD: writer?.password ?? ''
    }
  }

  const app = await buildApp(config)
  closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    app.readiness.shuttingDown()
    await app.close()
    await sandbox?.close()
  })

  const address = await app.listen({ port: config.PORT, host: config.HOST })
  if (sandbox !== undefined) {
    app.log.info({ upstream: sandbox.baseUrl }, 'embedded sandbox upstream started (set ATLAS_BASE_URL to use the real server)')
  }
  app.log.info({ address, docs: `${address}/docs` }, 'atlas-gateway listening')
}

await main()
