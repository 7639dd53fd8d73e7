// The child side of children.ts: announce readiness with the child's pid, answer commands, and close
// on request or when the harness goes away (so an interrupted run leaves no process behind).
type Message = { type: string, [key: string]: unknown }

export function announce (data: Record<string, unknown>): void {
  process.send?.({ type: 'ready', pid: process.pid, ...data })
}

export function onCommand (type: string, handler: (message: Message) => Promise<Record<string, unknown>>): void {
  process.on('message', (message: Message) => {
    if (message.type !== type) return
    handler(message).then(
      (reply) => process.send?.({ ...reply, type }),
      (err: unknown) => process.send?.({ type, error: String(err) })
    )
  })
}

export function onClose (close: () => Promise<void>): void {
  let isClosing = false
  const finish = (): void => {
    if (isClosing) return
    isClosing = true
    // exit(0) after close lets node --cpu-prof write its profile.
    close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('message', (message: Message) => { if (message.type === 'close') finish() })
  process.on('disconnect', finish)
  process.on('SIGTERM', finish)
}

/** JSON settings handed down by the harness in one environment variable. */
export function settingsFrom<T> (name: string): T {
  const text = process.env[name]
  if (text === undefined) throw new Error(`${name} is not set: this script is started by bench/run.ts`)
  return JSON.parse(text) as T
}
