// autocannon as the closed-loop fallback when wrk is not installed. Its histogram stores whole
// milliseconds, too coarse for a 1–5 ms p99, so latencies are taken from its per-response event.
import autocannon from 'autocannon'
import { summarise, type ClosedLoad, type LoadGenerator, type LoadResult } from './load.js'

export function createAutocannonGenerator (): LoadGenerator {
  return {
    name: 'autocannon',
    run (load: ClosedLoad): Promise<LoadResult> {
      const latencies: number[] = []
      let non2xx = 0
      let bytes = 0
      const started = performance.now()
      return new Promise((resolve, reject) => {
        const tracker = autocannon({
          url: load.origin + load.request.path,
          connections: load.connections,
          duration: load.durationS,
          method: load.request.method,
          headers: load.request.headers,
          ...(load.request.body === undefined ? {} : { body: load.request.body })
        }, (err, result) => {
          if (err !== null) { reject(err); return }
          const durationS = (performance.now() - started) / 1000
          resolve(summarise(latencies, durationS, { errors: result.errors + result.timeouts, non2xx, bytes }))
        })
        tracker.on('response', (_client: unknown, statusCode: number, resBytes: number, responseTime: number) => {
          latencies.push(responseTime)
          bytes += resBytes
          if (statusCode >= 400) non2xx++
        })
      })
    }
  }
}
