// Injected faults: a queue of one-shot (or n-shot) misbehaviours for the next matching requests, so
// that gateway tests can flip a switch on the upstream instead of stubbing the client.
import type { Reply } from './api-view.js'
import { throttledDetail } from './throttle.js'
import type { EndpointName, SandboxFault } from './types.js'

// The production window: a throttled upstream says "Expected available in 3600 seconds."
const DEFAULT_RETRY_AFTER_S = 3600
export const DEFAULT_SLOW_BODY_MS = 1000

interface QueuedFault {
  fault: SandboxFault
  remaining: number
}

export class FaultQueue {
  private queue: QueuedFault[] = []

  add (fault: SandboxFault): void {
    const times = fault.times ?? 1
    if (times > 0) this.queue.push({ fault, remaining: times })
  }

  clear (): void {
    this.queue = []
  }

  /** The first queued fault for this endpoint (or for any endpoint), used up by one request. */
  take (endpoint: EndpointName | undefined): SandboxFault | undefined {
    const at = this.queue.findIndex((q) => q.fault.endpoint === undefined || q.fault.endpoint === endpoint)
    const queued = this.queue[at]
    if (queued === undefined) return undefined
    if (--queued.remaining <= 0) this.queue.splice(at, 1)
    return queued.fault
  }
}

/** The canned reply of a fault that answers without running the endpoint. */
export function faultReply (fault: SandboxFault): Reply | undefined {
  switch (fault.kind) {
    case 'html500':
      return { status: 500, headers: {}, body: '', html: 'page500' }
    case 'status':
      return {
        status: fault.status ?? 500,
        headers: { 'Content-Type': fault.contentType ?? 'application/json' },
        body: fault.body ?? '{"detail":"injected"}'
      }
    case 'throttle': {
      const wait = fault.retryAfterS ?? DEFAULT_RETRY_AFTER_S
      return {
        status: 429,
        headers: { 'Content-Type': 'application/json', 'Retry-After': String(wait), Vary: 'Accept' },
        body: JSON.stringify({ detail: throttledDetail(wait) })
      }
    }
    default:
      return undefined
  }
}
