// Prometheus metrics (prom-client). Every metric the gateway exports is created here, so names and
// label sets are in one place; other modules receive `app.metrics` and only inc/observe. Label values
// are bounded: route templates (never raw URLs), endpoint names, consumer ids, fixed outcome words.
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export type Metrics = ReturnType<typeof createMetrics>

export function createMetrics (registry = new Registry()) {
  const registers = [registry]
  return {
    registry,
    requests: new Counter({ name: 'gateway_requests_total', help: 'requests by route template, status and consumer', labelNames: ['route', 'status', 'consumer'] as const, registers }),
    requestDuration: new Histogram({ name: 'gateway_request_duration_seconds', help: 'request duration by route template', labelNames: ['route'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }),
    cacheResults: new Counter({ name: 'gateway_cache_results_total', help: 'cache outcomes by route (hit, miss, stale, bypass)', labelNames: ['route', 'result'] as const, registers }),
    upstreamCalls: new Counter({ name: 'gateway_upstream_calls_total', help: 'upstream calls by endpoint and status (or error kind)', labelNames: ['endpoint', 'status'] as const, registers }),
    upstreamDuration: new Histogram({ name: 'gateway_upstream_duration_seconds', help: 'upstream call duration by endpoint', labelNames: ['endpoint'] as const, buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600], registers }),
    upstreamBudgetRemaining: new Gauge({ name: 'gateway_upstream_budget_remaining', help: 'upstream calls left in the global budget (last seen)', registers }),
    upstreamPauseSeconds: new Gauge({ name: 'gateway_upstream_pause_seconds', help: 'seconds left of an upstream 429 pause (0 when not paused)', registers }),
    tokenRefreshes: new Counter({ name: 'gateway_token_refreshes_total', help: 'upstream token refreshes by result', labelNames: ['result'] as const, registers }),
    limitRejections: new Counter({ name: 'gateway_limit_rejections_total', help: 'rate-limit and quota rejections by consumer and kind', labelNames: ['consumer', 'kind'] as const, registers }),
    coalesced: new Counter({ name: 'gateway_coalesced_total', help: 'reads served by joining another in-flight upstream call (single flight or id batching)', labelNames: ['kind'] as const, registers }),
    redisErrors: new Counter({ name: 'gateway_redis_errors_total', help: 'Redis errors (timeouts, disconnects) seen by the gateway', registers })
  }
}

export const metricsPlugin = fp(async (app) => {
  const metrics = createMetrics()
  collectDefaultMetrics({ register: metrics.registry })
  app.decorate('metrics', metrics)
}, { name: 'metrics', fastify: '5.x' })
