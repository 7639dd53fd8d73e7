import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS, startTestSandbox } from '../helper.js'
import { maxObjectsInfo, maxObjectsStated, resolvePaths, writeOutcome } from '../../src/upstream/endpoints.js'

test('an upstream rename is one override: a sandbox with objects/ renamed still serves the facade', async (t) => {
  const sandbox = await startTestSandbox(t, { paths: { objects: 'objects2' } })
  const broken = await buildTestApp(t, { upstream: sandbox, config: { UPSTREAM_RETRIES: 0 } })
  const before = await broken.app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: demoAuth(broken.app) })
  t.equal(before.statusCode, 502, 'the old path is gone upstream')
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { UPSTREAM_PATHS: '{"objects":"objects2/"}' } })
  const after = await app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: demoAuth(app) })
  t.equal(after.statusCode, 200)
  t.equal(after.json().object.id, FIXTURE_IDS.A)
})

test('UPSTREAM_PATHS is validated', async (t) => {
  t.throws(() => resolvePaths('{"nope":"x/"}'), /unknown endpoint/)
  t.throws(() => resolvePaths('{"objects":"../admin/"}'), /relative path/)
  t.throws(() => resolvePaths('[1]'), /JSON object/)
  t.equal(resolvePaths('').objects, 'objects/')
})

test('write outcomes are read from the info text, not the status', async (t) => {
  t.equal(writeOutcome('vrascores', 201, { objectid: 1n, info: 'Row created.' }), 'created')
  t.equal(writeOutcome('vratodo', 201, { objectid: 1n, info: 'Object does not exist.' }), 'unknown_object')
  t.equal(writeOutcome('objectgroups', 201, { objectgroupid: 1n, info: 'Duplicate row. Cannot add row.' }), 'duplicate')
  t.equal(writeOutcome('objectgroups', 201, { objectgroupid: 999, info: 'Object group ID does not exist.' }), 'unknown_list')
  t.equal(writeOutcome('objectdetectionlist', 200, { objectid: 1n, info: 'Error updating row.' }), 'rejected')
  t.equal(writeOutcome('objectgroupsdelete', 204, null), 'removed')
  t.equal(writeOutcome('vrascores', 201, { Error: 'GET is not implemented for this service.' }), undefined)
  // Only a removal answers a bare 204: on another write it says nothing (a move or an add that did not happen).
  t.equal(writeOutcome('objectdetectionlist', 204, null), undefined)
  t.equal(writeOutcome('vratodo', 204, null), undefined)
})

test('the id limit an objects/ "Max number of objects" reply states', async (t) => {
  t.equal(maxObjectsStated(maxObjectsInfo()), 50_000, 'with a thousands separator')
  t.equal(maxObjectsStated(maxObjectsInfo(5)), 5)
  t.equal(maxObjectsStated('{"info":"Max number of objects exceeded"}'), undefined, 'none stated')
  t.equal(maxObjectsStated('{"info":"Max number of objects for each requests is 0"}'), undefined, 'no usable limit')
})
