// A Redis Cluster master dies under load through three replicas: the one serving the upstream budget's
// slot (the budget, and whatever else hashes there). Its replica is promoted; the figures go to the
// README's operations section.
import t from 'tap'
import { startCluster, TOPOLOGY_SKIP } from '../fixtures/redis-cluster.js'
import { failover } from './failover.js'

t.setTimeout(180_000)
t.test('a cluster master killed under load through three replicas', { skip: TOPOLOGY_SKIP }, async (t) => {
  const cluster = await startCluster(t)
  const report = await failover(t, cluster.url, async () => {
    const master = await cluster.masterOf('x{budget}')
    await master.kill()
  })
  t.comment(`cluster failover: requests failed for ${report.failingForMs} ms after the kill; ${report.failed} of ${report.sent} failed ${JSON.stringify(report.codes)}`)
})
