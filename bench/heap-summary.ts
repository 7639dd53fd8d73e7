// Summarises a sampling heap profile (.heapprofile, the inspector's HeapProfiler.stopSampling) taken with
// every object kept, collected or not (gateway-process.ts, --heap-profile): bytes allocated on the JS
// heap per request, in all and by allocating function. Buffers' bytes live outside the JS heap and are
// not counted, only their small JS objects. Also runnable on its own:
//   npx tsx bench/heap-summary.ts <file.heapprofile> <requests> [top]
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { shortUrl } from './profile-summary.js'

interface HeapNode {
  callFrame: { functionName: string, url: string, lineNumber: number }
  selfSize: number
  children: HeapNode[]
}

export interface HeapProfile { head: HeapNode }

export interface AllocationSite { name: string, where: string, bytesPerRequest: number, percent: number }

export function readHeapProfile (file: string): HeapProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as HeapProfile
}

/** The bytes a request allocated in all, and the `top` functions that allocated most of them. */
export function summariseHeap (profile: HeapProfile, requests: number, top = 15): { bytesPerRequest: number, sites: AllocationSite[] } {
  const bySite = new Map<string, { name: string, where: string, bytes: number }>()
  let total = 0
  const walk = (node: HeapNode): void => {
    if (node.selfSize > 0) {
      const frame = node.callFrame
      const where = `${shortUrl(frame.url)}${frame.url === '' ? '' : `:${frame.lineNumber + 1}`}`
      const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
      const key = `${name} ${where}`
      const site = bySite.get(key) ?? { name, where, bytes: 0 }
      site.bytes += node.selfSize
      bySite.set(key, site)
      total += node.selfSize
    }
    for (const child of node.children) walk(child)
  }
  walk(profile.head)
  const per = (bytes: number): number => requests > 0 ? Math.round(bytes / requests) : 0
  const sites = [...bySite.values()].sort((a, b) => b.bytes - a.bytes).slice(0, top)
    .map((s) => ({ name: s.name, where: s.where, bytesPerRequest: per(s.bytes), percent: total === 0 ? 0 : Math.round(s.bytes / total * 1000) / 10 }))
  return { bytesPerRequest: per(total), sites }
}

export function heapTable (sites: AllocationSite[]): string {
  return ['| bytes a request | % | function | where |', '| ---: | ---: | --- | --- |',
    ...sites.map((s) => `| ${s.bytesPerRequest.toLocaleString('en-US')} | ${s.percent} | \`${s.name}\` | ${s.where} |`)].join('\n')
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, requests, top] = process.argv.slice(2)
  if (file === undefined || requests === undefined) {
    process.stderr.write('usage: npx tsx bench/heap-summary.ts <file.heapprofile> <requests> [top]\n')
    process.exit(2)
  }
  const { bytesPerRequest, sites } = summariseHeap(readHeapProfile(file), Number(requests), top === undefined ? undefined : Number(top))
  process.stdout.write(`${bytesPerRequest.toLocaleString('en-US')} bytes a request on the JS heap\n\n${heapTable(sites)}\n`)
}
