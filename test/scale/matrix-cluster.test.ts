// The Redis suites on a 3-master, 3-replica Redis Cluster (REDIS_URL=redis+cluster://…), started once
// for the whole file.
import t from 'tap'
import { startCluster } from '../fixtures/redis-cluster.js'
import { MATRIX_TIMEOUT_MS, runMatrix } from './matrix.js'

t.setTimeout(MATRIX_TIMEOUT_MS)
const cluster = await startCluster(t)
await runMatrix(t, `the Redis suites on ${cluster.url}`, cluster.url)
