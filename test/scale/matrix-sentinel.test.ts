// The Redis suites on a Sentinel setup (a master, a replica, 3 Sentinels; REDIS_URL=redis+sentinel://…
// with a password), started once for the whole file.
import t from 'tap'
import { startSentinel } from '../fixtures/redis-cluster.js'
import { MATRIX_TIMEOUT_MS, runMatrix } from './matrix.js'

t.setTimeout(MATRIX_TIMEOUT_MS)
const sentinel = await startSentinel(t, { password: 'matrix p@ss' })
await runMatrix(t, `the Redis suites on ${sentinel.url.replace(/:[^:@/]*@/, ':***@')}`, sentinel.url)
