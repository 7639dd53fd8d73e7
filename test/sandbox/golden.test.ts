// Conformance: replay all 169 recorded upstream cases (upstream-golden.json) in `seq` order over real
// loopback HTTP against fresh sandboxes, following upstream-golden.md "Using it in sandbox tests".
import { test, type Test } from 'tap'
import { parseLossless } from '../../src/lib/json.js'
import { deriveToken } from '../../src/sandbox/auth.js'
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js'
import { buildRequest, header, loadGoldenCases, parseShaped, quotedIds, shapeErrors, type GoldenCase, type GoldenContext } from '../fixtures/golden.js'
import { rawRequest, type RawResponse } from '../fixtures/raw-http.js'

const SEED = 7
const cases = loadGoldenCases()

function contextOf (sandbox: Sandbox): GoldenContext {
  return {
    baseUrl: sandbox.baseUrl,
    tokens: { ...sandbox.tokens },
    // golden_rotator's key from before case 158 rotated it.
    rotatedKey: deriveToken(SEED, 'golden_rotator', 0),
    passwords: Object.fromEntries(Object.values(sandbox.users).map((u) => [u.username, u.password]))
  }
}

function check (t: Test, c: GoldenCase, res: RawResponse): void {
  const e = c.expect
  t.equal(res.status, e.status, 'status')
  for (const [name, want] of Object.entries(e.headers)) {
    if (want === null) t.equal(header(res, name), undefined, `no ${name} header`)
    else t.equal(header(res, name), want, `${name} header`)
  }
  if (e.html === true) {
    t.match(header(res, 'content-type') ?? '', /^text\/html/, 'an HTML page')
    for (const text of e.body_contains ?? []) t.ok(res.text.includes(text), `the page contains "${text}"`)
  } else if ('body_exact' in e) {
    if (e.body_exact === '') t.equal(res.text, '', 'empty body')
    else t.strictSame(parseLossless(res.text), e.body_exact, 'body')
  } else {
    t.same(shapeErrors(parseShaped(res.text), e.body_shape), [], 'body shape')
  }
  if (e.ids_as_json_numbers === true) t.same(quotedIds(res.text), [], 'ids are bare JSON integers')
}

test('golden corpus: every case is here', async (t) => {
  t.equal(cases.length, 169)
  t.same(cases.map((c) => c.seq), Array.from({ length: 169 }, (_, i) => i + 1))
})

test('golden corpus: the main run, in seq order, on one fresh sandbox', async (t) => {
  // The main run makes 129 write-user calls: keep the 100/hour budget out of its way.
  const sandbox = await startSandbox({ port: 0, seed: SEED, throttleRate: '100000/hour', anonThrottleRate: '100000/hour' })
  t.teardown(() => sandbox.close())
  const ctx = contextOf(sandbox)
  for (const c of cases.filter((k) => k.setup === undefined)) {
    await t.test(c.name, async (t) => {
      check(t, c, await rawRequest(buildRequest(c, ctx)))
    })
  }
})

test('golden corpus: throttling at lowered rates (user 3/min, anon 2/min)', async (t) => {
  const sandbox = await startSandbox({ port: 0, seed: SEED, throttleRate: '3/min', anonThrottleRate: '2/min' })
  t.teardown(() => sandbox.close())
  const ctx = contextOf(sandbox)
  for (const c of cases.filter((k) => k.setup !== undefined)) {
    await t.test(c.name, async (t) => {
      const setup = c.setup
      t.same(setup?.throttle_rates_override, { user: '3/min', anon: '2/min' }, 'the rates this sandbox runs at')
      for (const [i, prior] of (setup?.prior_requests ?? []).entries()) {
        const res = await rawRequest(buildRequest(prior, ctx))
        t.equal(res.status, setup?.prior_statuses[i], `prior request ${i + 1}`)
      }
      check(t, c, await rawRequest(buildRequest(c, ctx)))
    })
  }
})
