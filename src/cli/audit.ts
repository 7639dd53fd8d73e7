// npm run audit -- --since DATE [--consumer ID] [--object ID] [--until DATE] [--json|--csv]
// The audit of upstream writes, oldest first, as the gateway stored it (cli/stores.ts picks the Redis
// stream or the JSON-lines file by the same settings). Text by default; --json writes JSON Lines (one
// record a line), --csv RFC 4180 CSV with a header. Like server.ts this is an entry point, so it may
// read process.env.
import { parseArgs } from 'node:util'
import { auditCsv, type AuditFilter, type AuditRecord } from '../audit/record.js'
import { MAX_PAGE } from '../audit/store.js'
import { parseInstant } from '../lib/datetime.js'
import { allPages, formatRows, runAsMain, type CliIo } from './main.js'
import { withStores } from './stores.js'

export type { CliIo } from './main.js'

const USAGE = 'usage: audit --since DATE [--until DATE] [--consumer ID] [--object ID] [--json|--csv]\n' +
  '  DATE: YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|±hh:mm] (UTC when no zone)\n'

const OPTIONS = {
  since: { type: 'string' },
  until: { type: 'string' },
  consumer: { type: 'string' },
  object: { type: 'string' },
  json: { type: 'boolean' },
  csv: { type: 'boolean' }
} as const

function instant (flag: string, text: string): number {
  const ms = parseInstant(text)
  if (ms === undefined) throw new Error(`--${flag} must be a date or datetime, e.g. 2026-11-01 or 2026-11-01T12:00Z`)
  return ms
}

function textLine (r: AuditRecord): string {
  const fields = Object.entries(r.fields).map(([k, v]) => `${k}=${v}`).join(' ')
  return `${r.time}\t${r.consumer}\t${r.route}\t${r.endpoint}\t${r.object_ids.join(',')}\t${r.outcome}` +
    `${r.upstream_status === null ? '' : ` (${r.upstream_status})`}${r.error === null ? '' : ` ${r.error}`}\t${fields}\trequest ${r.request_id}\n`
}

/** Runs the CLI; resolves to the process exit code. */
export async function runAudit (argv: readonly string[], io: CliIo): Promise<number> {
  let values
  try {
    values = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: false }).values
  } catch (err) {
    io.err(`audit: ${(err as Error).message}\n${USAGE}`)
    return 2
  }
  if (values.since === undefined || (values.json === true && values.csv === true)) {
    io.err(USAGE)
    return 2
  }
  try {
    if (values.object !== undefined && !/^\d{19}$/.test(values.object)) throw new Error('--object must be an ATLAS id (19 digits)')
    const filter: AuditFilter = {
      limit: MAX_PAGE,
      since: instant('since', values.since),
      ...(values.until === undefined ? {} : { until: instant('until', values.until) }),
      ...(values.consumer === undefined ? {} : { consumer: values.consumer }),
      ...(values.object === undefined ? {} : { object: values.object })
    }
    const records = await withStores(io.env, async ({ audit }) => allPages(async (cursor) => {
      const page = await audit.query(cursor === undefined ? filter : { ...filter, cursor })
      return { items: page.records, next: page.next }
    }), (id, reason) => { io.err(`audit: record ${id} left out: it does not decode (${reason})\n`) })
    io.out(formatRows(records, values, auditCsv, textLine))
    io.err(`${records.length} record${records.length === 1 ? '' : 's'}\n`)
    return 0
  } catch (err) {
    io.err(`audit: ${(err as Error).message}\n`)
    return 1
  }
}

await runAsMain(import.meta.url, runAudit)
