// npm run usage -- --month 2026-11 [--consumer ID] [--csv|--json]
//                  --from 2026-11-01 --to 2026-11-15 [...]
// Usage per consumer per UTC day (usage/report.ts), read from the gateway's store (cli/stores.ts).
// Replicas write their counts every USAGE_FLUSH_MS and when they close, so the last seconds may be
// missing. Text by default; --json writes JSON Lines, --csv RFC 4180 CSV with a header.
import { parseArgs } from 'node:util'
import { daysBetween, daysOfMonth, usageCsv, type UsageRow } from '../usage/report.js'
import { readUsage } from '../usage/store.js'
import { allPages, formatRows, runAsMain, type CliIo } from './main.js'
import { withStores } from './stores.js'

const USAGE = 'usage: usage (--month YYYY-MM | --from YYYY-MM-DD --to YYYY-MM-DD) [--consumer ID] [--json|--csv]\n'
const MAX_ROWS_PER_READ = 10000

const OPTIONS = {
  month: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  consumer: { type: 'string' },
  json: { type: 'boolean' },
  csv: { type: 'boolean' }
} as const

function textLine (r: UsageRow): string {
  const pairs = (o: Record<string, number>): string => Object.entries(o).sort().map(([k, n]) => `${k}=${n}`).join(',') || '-'
  return `${r.day}\t${r.consumer}\trequests=${r.requests} (${pairs(r.requests_by_class)})\tunits=${r.units}\tupstream_calls=${r.upstream_calls}` +
    `\tcache_hit_ratio=${r.cache_hit_ratio ?? '-'}\twrites=${r.writes}\terrors=${r.errors}\tclient_errors=${r.client_errors}\trejections=${pairs(r.rejections)}\n`
}

export async function runUsage (argv: readonly string[], io: CliIo): Promise<number> {
  let values
  try {
    values = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: false }).values
  } catch (err) {
    io.err(`usage: ${(err as Error).message}\n${USAGE}`)
    return 2
  }
  const isMonth = values.month !== undefined && values.from === undefined && values.to === undefined
  const isRange = values.month === undefined && values.from !== undefined && values.to !== undefined
  if ((!isMonth && !isRange) || (values.json === true && values.csv === true)) {
    io.err(USAGE)
    return 2
  }
  try {
    const rows = await withStores(io.env, async ({ usage, config }) => {
      const days = values.month !== undefined
        ? daysOfMonth(values.month)
        : daysBetween(values.from as string, values.to as string, config.USAGE_RETENTION_DAYS)
      if (days === undefined) throw new Error(`--month must be YYYY-MM; --from and --to YYYY-MM-DD, from ≤ to, at most ${config.USAGE_RETENTION_DAYS} days apart`)
      return await allPages(async (cursor) => {
        const page = await readUsage(usage, { days, limit: MAX_ROWS_PER_READ, ...(values.consumer === undefined ? {} : { consumer: values.consumer }), ...(cursor === undefined ? {} : { cursor }) })
        return { items: page.rows, next: page.next }
      })
    })
    io.out(formatRows(rows, values, usageCsv, textLine))
    return 0
  } catch (err) {
    io.err(`usage: ${(err as Error).message}\n`)
    return 1
  }
}

await runAsMain(import.meta.url, runUsage)
