// The part of autocannon's (untyped) API the harness uses.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  interface AutocannonRequest {
    method?: string
    path?: string
    headers?: Record<string, string>
    body?: string
  }

  interface AutocannonOptions {
    url: string
    connections?: number
    duration?: number
    method?: string
    headers?: Record<string, string>
    body?: string
    overallRate?: number
    requests?: Array<AutocannonRequest & { setupRequest?: (request: AutocannonRequest) => AutocannonRequest }>
  }

  interface AutocannonResult {
    requests: { total: number }
    duration: number
    errors: number
    timeouts: number
    non2xx: number
    throughput: { total: number }
  }

  function autocannon (opts: AutocannonOptions, cb: (err: Error | null, result: AutocannonResult) => void): EventEmitter
  export default autocannon
}
