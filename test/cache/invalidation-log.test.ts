import { test } from 'tap'
import { createInvalidationLog } from '../../src/cache/invalidation-log.js'

test('a load may store unless one of its tags was invalidated since its mark', async (t) => {
  const log = createInvalidationLog(4)
  const mark = log.mark()
  t.notOk(log.isInvalidatedSince(mark, ['a']), 'nothing happened')
  log.record(['b'])
  t.notOk(log.isInvalidatedSince(mark, ['a']), 'another tag')
  log.record(['a', 'c'])
  t.ok(log.isInvalidatedSince(mark, ['x', 'a']))
  t.notOk(log.isInvalidatedSince(log.mark(), ['a']), 'a later mark is clean')
})

test('when the log no longer reaches back to a mark, it answers conservatively', async (t) => {
  const log = createInvalidationLog(2)
  const mark = log.mark()
  log.record(['1'])
  log.record(['2'])
  t.notOk(log.isInvalidatedSince(mark, ['x']), 'still covered')
  log.record(['3'])
  t.ok(log.isInvalidatedSince(mark, ['x']), 'the oldest record was dropped: do not store')
})
