// A Sentinel-managed master dies under load through three replicas; the Sentinels promote the replica.
// The figures go to the README's operations section.
import t from 'tap'
import { startSentinel, TOPOLOGY_SKIP } from '../fixtures/redis-cluster.js'
import { failover } from './failover.js'

t.setTimeout(180_000)
t.test('a Sentinel master killed under load through three replicas', { skip: TOPOLOGY_SKIP }, async (t) => {
  const sentinel = await startSentinel(t)
  const report = await failover(t, sentinel.url, async () => { await sentinel.master.kill() })
  t.equal(await sentinel.masterPort(), sentinel.replica.port, 'the Sentinels promoted the replica')
  t.comment(`sentinel failover: requests failed for ${report.failingForMs} ms after the kill; ${report.failed} of ${report.sent} failed ${JSON.stringify(report.codes)}`)
})
