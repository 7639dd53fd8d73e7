// What a light curve of a big record costs: the sandbox's record for one object with N forced-photometry
// rows (one every 0.05 days) instead of its own, read through the gateway in-process (no Redis), then
// GET /v1/objects/{id}/lightcurve in each format without and with several mjd_min values. For each request
// it prints the answer's size, the points the SVG drew, and the longest the event loop was blocked while
// it ran (the widest gap between the turns of a 1 ms timer): other requests wait that long.
//   npx tsx bench/lightcurve-cost.ts [--rows N] [--root DIR]
// --root measures another checkout's src/ (e.g. the base of a change, for before and after).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { FastifyInstance } from 'fastify'
import type { buildApp as BuildApp } from '../src/app.js'
import type { loadConfig as LoadConfig } from '../src/config.js'
import type { startSandbox as StartSandbox } from '../src/sandbox/index.js'
import { OBJECT_A } from './scenarios-hit.js'

const { values } = parseArgs({ options: { rows: { type: 'string', default: '5000' }, root: { type: 'string' } } })
const ROWS = Number(values.rows)
const root = values.root ?? fileURLToPath(new URL('..', import.meta.url))

const QUERIES = [
  'format=svg', 'format=svg', 'format=svg&mjd_min=1', 'format=svg&mjd_min=1.5', 'format=svg&mjd_min=2',
  'format=csv', 'format=csv&mjd_min=3', 'format=csv&mjd_min=3.5',
  'format=json', 'format=json&mjd_min=4', 'format=json&mjd_min=4.5'
]

/** The widest gap between turns of a 1 ms timer while `run` runs (and 10 ms after, for its answer's writes). */
async function blockedMs<T> (run: () => Promise<T>): Promise<{ result: T, ms: number }> {
  await new Promise((resolve) => setTimeout(resolve, 20))
  let last = performance.now()
  let widest = 0
  const timer = setInterval(() => {
    const now = performance.now()
    widest = Math.max(widest, now - last)
    last = now
  }, 1)
  const result = await run()
  await new Promise((resolve) => setTimeout(resolve, 10))
  clearInterval(timer)
  return { result, ms: Math.max(widest, performance.now() - last) }
}

async function main (): Promise<void> {
  const { buildApp } = await import(join(root, 'src/app.ts')) as { buildApp: typeof BuildApp }
  const { loadConfig } = await import(join(root, 'src/config.ts')) as { loadConfig: typeof LoadConfig }
  const { startSandbox } = await import(join(root, 'src/sandbox/index.ts')) as { startSandbox: typeof StartSandbox }
  const dir = mkdtempSync(join(tmpdir(), 'atlas-lightcurve-cost-'))
  const sandbox = await startSandbox({ port: 0, throttleRate: '100000/hour', logger: false })
  const app: FastifyInstance = await buildApp({
    ...loadConfig({ LOG_LEVEL: 'warn', UPSTREAM_RATE: '100000/hour' }),
    AUDIT_FILE: join(dir, 'audit.jsonl'),
    USAGE_FILE: join(dir, 'usage.json'),
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    REDIS_URL: '',
    CONSUMERS_FILE: ''
  }, { logStream: new PassThrough() })
  await app.ready()
  try {
    const headers = { authorization: `Bearer ${app.consumers.demoKey ?? ''}` }
    const res = await fetch(sandbox.baseUrl + 'objects/', {
      method: 'POST',
      headers: { authorization: `Token ${sandbox.tokens.write}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ objects: OBJECT_A }).toString()
    })
    const text = await res.text()
    const row = /"fp":\s*\[\s*(\{[^}]*\})/.exec(text)?.[1]
    if (row === undefined) throw new Error('the sandbox record has no forced photometry to copy')
    const rows = Array.from({ length: ROWS }, (_, i) => row.replace(/"mjd_obs":\s*[0-9.]+/, `"mjd_obs": ${(57000 + i * 0.05).toFixed(5)}`))
    const big = text.replace(/"fp":\s*\[[^\]]*\]/, `"fp": [${rows.join(',')}]`)
    console.log(`root ${root}: a record of ${(big.length / 1e6).toFixed(2)} MB with ${ROWS} forced-photometry rows`)
    sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: big, times: 1 })
    await app.inject({ url: `/v1/objects/${OBJECT_A}`, headers })
    for (const query of QUERIES) {
      const { result, ms } = await blockedMs(async () => app.inject({ url: `/v1/objects/${OBJECT_A}/lightcurve?${query}`, headers }))
      const drawn = query.startsWith('format=svg') ? `, ${result.body.split('class="pt"').length - 1} points drawn` : ''
      console.log(`${query.padEnd(24)} ${result.statusCode} ${(result.rawPayload.length / 1e6).toFixed(3)} MB, event loop blocked ${ms.toFixed(0)} ms${drawn}`)
    }
  } finally {
    await app.close()
    await sandbox.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
