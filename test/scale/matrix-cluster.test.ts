// The Redis suites on a 3-master, 3-replica Redis Cluster (REDIS_URL=redis+cluster://…), started once
// for the whole file.
import t from 'tap'
import { MATRIX_NODE_TIMEOUT_MS, startCluster, TOPOLOGY_SKIP } from '../fixtures/redis-cluster.js'
import { MATRIX_TIMEOUT_MS, runMatrix } from './matrix.js'

t.setTimeout(MATRIX_TIMEOUT_MS)
t.test('the Redis suites on a Redis Cluster', { skip: TOPOLOGY_SKIP }, async (t) => {
  const cluster = await startCluster(t, { nodeTimeoutMs: MATRIX_NODE_TIMEOUT_MS })
  await runMatrix(t, `REDIS_URL=${cluster.url}`, cluster.url)
})
