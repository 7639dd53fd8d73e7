// The Redis suites on a Sentinel setup (a master, a replica, 3 Sentinels; REDIS_URL=redis+sentinel://…
// with a password), started once for the whole file.
import t from 'tap'
import { MATRIX_NODE_TIMEOUT_MS, startSentinel, TOPOLOGY_SKIP } from '../fixtures/redis-cluster.js'
import { redactRedisUrl } from '../../src/lib/redis-url.js'
import { MATRIX_TIMEOUT_MS, runMatrix } from './matrix.js'

t.setTimeout(MATRIX_TIMEOUT_MS)
t.test('the Redis suites on a Sentinel setup', { skip: TOPOLOGY_SKIP }, async (t) => {
  const sentinel = await startSentinel(t, { password: 'matrix p@ss', nodeTimeoutMs: MATRIX_NODE_TIMEOUT_MS })
  await runMatrix(t, `REDIS_URL=${redactRedisUrl(sentinel.url)}`, sentinel.url)
})
