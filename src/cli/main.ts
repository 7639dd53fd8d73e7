// What the CLIs (keys, audit, usage) share: their I/O, the entry-point check, reading every page of a
// cursor-paged store, and writing rows as text, JSON Lines or CSV.
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'

export interface CliIo {
  env: Record<string, string | undefined>
  out: (text: string) => void
  err: (text: string) => void
}

/** Runs `run` with the process's arguments and I/O when the module at `moduleUrl` is the entry point. */
export async function runAsMain (moduleUrl: string, run: (argv: string[], io: CliIo) => Promise<number>): Promise<void> {
  /* c8 ignore start -- entry points; tests spawn them */
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(resolve(process.argv[1])).href) return
  process.exitCode = await run(process.argv.slice(2), {
    env: process.env,
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text)
  })
  /* c8 ignore stop */
}

/** Every item of a cursor-paged read, from the first page until the cursor is null. */
export async function allPages<T> (read: (cursor: string | undefined) => Promise<{ items: T[], next: string | null }>): Promise<T[]> {
  const all: T[] = []
  for (let cursor: string | null | undefined; cursor !== null;) {
    const page = await read(cursor ?? undefined)
    all.push(...page.items)
    cursor = page.next
  }
  return all
}

/** Rows as CSV (`--csv`), JSON Lines (`--json`) or text lines. */
export function formatRows<T> (rows: readonly T[], as: { csv?: boolean, json?: boolean }, csv: (rows: readonly T[]) => string, textLine: (row: T) => string): string {
  if (as.csv === true) return csv(rows)
  if (as.json === true) return rows.map((r) => JSON.stringify(r) + '\n').join('')
  return rows.map(textLine).join('')
}
