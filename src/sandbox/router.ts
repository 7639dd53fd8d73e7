// URL routing as Django resolves the upstream's urls.py: `<prefix><segment>/` is an endpoint; the same
// path without its trailing slash is a 301 to the slashed path (APPEND_SLASH); anything else is a 404.
import { authToken } from './endpoint-auth-token.js'
import { READ_ENDPOINTS } from './endpoints-read.js'
import { WRITE_ENDPOINTS } from './endpoints-write.js'
import type { EndpointName } from './types.js'
import type { EndpointDef } from './view.js'

export const ENDPOINTS: readonly EndpointDef[] = [...READ_ENDPOINTS, ...WRITE_ENDPOINTS, authToken]

export type Route =
  | { kind: 'endpoint', name: EndpointName, def: EndpointDef }
  | { kind: 'redirect', name: EndpointName, location: string }
  | { kind: 'not-found' }

function decodePath (path: string): string {
  try {
    return decodeURIComponent(path)
  } catch {
    return path
  }
}

export class Router {
  private readonly bySegment = new Map<string, EndpointDef>()

  constructor (private readonly prefix: string, segments: Record<EndpointName, string>) {
    for (const def of ENDPOINTS) this.bySegment.set(segments[def.name], def)
  }

  route (rawPath: string, rawQuery: string): Route {
    const path = decodePath(rawPath)
    if (!path.startsWith(this.prefix)) return { kind: 'not-found' }
    const rest = path.slice(this.prefix.length)
    const slashed = rest.endsWith('/')
    const segment = slashed ? rest.slice(0, -1) : rest
    const def = segment === '' || segment.includes('/') ? undefined : this.bySegment.get(segment)
    if (def === undefined) return { kind: 'not-found' }
    if (slashed) return { kind: 'endpoint', name: def.name, def }
    // Django's get_full_path(force_append_slash=True): root-relative, query string kept.
    return { kind: 'redirect', name: def.name, location: `${rawPath}/${rawQuery === '' ? '' : `?${rawQuery}`}` }
  }
}
