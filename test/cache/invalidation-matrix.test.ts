// One invalidation table (src/cache/tags.ts): each write endpoint, from either dialect, × each cached
// view that shows its effect, in both dialects. Every view is read (and so cached) before the write;
// after it, every view whose upstream answer changed must show the change through the gateway at once.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'
import type { Sandbox } from '../../src/sandbox/index.js'

const { A, B, C } = FIXTURE_IDS
const VRA_GROUP = 73 // the custom list "vra"

interface View { name: string, v1?: string, compat: string }

function views (id: string): View[] {
  return [
    { name: 'custom list members', v1: '/v1/custom-lists/vra/objects', compat: `objectgroupslist/?objectgroupid=${VRA_GROUP}` },
    { name: 'lists of the object', v1: `/v1/objects/${id}/custom-lists`, compat: `objectgroupslist/?objectid=${id}` },
    { name: 'whole membership table', compat: 'objectgroupslist/' },
    { name: 'custom list rows', v1: '/v1/lists/vra/objects', compat: `objectlist/?objectlistid=${VRA_GROUP}&getcustomlist=true` },
    { name: 'eyeball list', v1: '/v1/lists/eyeball/objects', compat: 'objectlist/?objectlistid=4' },
    { name: 'possible list', v1: '/v1/lists/possible/objects', compat: 'objectlist/?objectlistid=3' },
    { name: 'object record', v1: `/v1/objects/${id}`, compat: `objects/?objects=${id}` },
    { name: 'VRA scores', v1: '/v1/vra/scores', compat: 'vrascoreslist/' },
    { name: 'VRA to-do', v1: '/v1/vra/todo', compat: 'vratodolist/' },
    { name: 'VRA ranks', v1: '/v1/vra/ranks', compat: 'vraranklist/' }
  ]
}

interface Write {
  name: string
  id: string
  v1: { method: 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown }
  compat: { endpoint: string, fields: Record<string, string> }
  /** Views that must change (the upstream's own answer changes); checked against the sandbox too. */
  shows: string[]
}

const WRITES: Write[] = [
  {
    name: 'add to a custom list',
    id: A,
    v1: { method: 'PUT', url: `/v1/custom-lists/vra/objects/${A}` },
    compat: { endpoint: 'objectgroups', fields: { objectid: A, objectgroupid: String(VRA_GROUP) } },
    shows: ['custom list members', 'lists of the object', 'whole membership table', 'custom list rows']
  },
  {
    name: 'remove from a custom list',
    id: C,
    v1: { method: 'DELETE', url: `/v1/custom-lists/vra/objects/${C}` },
    compat: { endpoint: 'objectgroupsdelete', fields: { objectid: C, objectgroupid: String(VRA_GROUP) } },
    shows: ['custom list members', 'lists of the object', 'whole membership table', 'custom list rows']
  },
  {
    name: 'VRA score',
    id: B,
    v1: { method: 'POST', url: '/v1/vra/scores', body: { id: B, preal: 0.5 } },
    compat: { endpoint: 'vrascores', fields: { objectid: B, preal: '0.5' } },
    shows: ['VRA scores']
  },
  {
    name: 'VRA to-do',
    id: B,
    v1: { method: 'POST', url: '/v1/vra/todo', body: { id: B } },
    compat: { endpoint: 'vratodo', fields: { objectid: B } },
    shows: ['VRA to-do']
  },
  {
    name: 'VRA rank',
    id: B,
    v1: { method: 'POST', url: '/v1/vra/ranks', body: { id: B, rank: 9.25 } },
    compat: { endpoint: 'vrarank', fields: { objectid: B, rank: '9.25' } },
    shows: ['VRA ranks']
  },
  {
    name: 'move to a detection list',
    id: C,
    v1: { method: 'PUT', url: `/v1/objects/${C}/detection-list`, body: { list: 'possible' } },
    compat: { endpoint: 'objectdetectionlist', fields: { objectid: C, objectlist: '3' } },
    shows: ['possible list', 'custom list rows']
  }
]

async function direct (sandbox: Sandbox, path: string): Promise<string> {
  const res = await fetch(sandbox.baseUrl + path, { headers: { authorization: `Token ${sandbox.tokens.staff}`, accept: 'application/json' } })
  return await res.text()
}

async function gateway (app: FastifyInstance, url: string): Promise<string> {
  const headers = url.startsWith('/atlas/') ? { authorization: `Token ${app.consumers.demoKey as string}` } : demoAuth(app)
  const res = await app.inject({ url, headers })
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`)
  return res.body
}

async function snapshot (app: FastifyInstance, sandbox: Sandbox, list: View[]) {
  const out = new Map<string, { v1?: string, compat: string, upstream: string }>()
  for (const view of list) {
    out.set(view.name, {
      ...(view.v1 === undefined ? {} : { v1: await gateway(app, view.v1) }),
      compat: await gateway(app, `/atlas/api/${view.compat}`),
      upstream: await direct(sandbox, view.compat)
    })
  }
  return out
}

for (const write of WRITES) {
  for (const dialect of ['v1', 'compat'] as const) {
    test(`${write.name} through ${dialect}: every view that shows it changes at once, in both dialects`, async (t) => {
      const { app, sandbox } = await buildTestApp(t)
      const list = views(write.id)
      const before = await snapshot(app, sandbox, list)
      if (dialect === 'v1') {
        const res = await app.inject({ method: write.v1.method, url: write.v1.url, headers: demoAuth(app), ...(write.v1.body === undefined ? {} : { payload: write.v1.body as object }) })
        t.ok(res.statusCode < 300, `v1 write: ${res.statusCode} ${res.body}`)
      } else {
        const res = await app.inject({
          method: 'POST',
          url: `/atlas/api/${write.compat.endpoint}/`,
          headers: { authorization: `Token ${app.consumers.demoKey as string}`, 'content-type': 'application/x-www-form-urlencoded' },
          payload: new URLSearchParams(write.compat.fields).toString()
        })
        t.ok(res.statusCode < 300, `compat write: ${res.statusCode} ${res.body}`)
      }
      const after = await snapshot(app, sandbox, list)
      for (const view of list) {
        const b = before.get(view.name)
        const a = after.get(view.name)
        if (b === undefined || a === undefined) throw new Error('snapshot incomplete')
        const changedUpstream = a.upstream !== b.upstream
        if (write.shows.includes(view.name)) t.ok(changedUpstream, `${view.name}: the upstream's answer changes`)
        if (!changedUpstream) continue
        t.not(a.compat, b.compat, `${view.name}: compat shows the change`)
        if (a.v1 !== undefined) t.not(a.v1, b.v1, `${view.name}: v1 shows the change`)
      }
    })
  }
}
