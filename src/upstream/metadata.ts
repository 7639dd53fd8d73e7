// What each upstream view says about itself: its name (APIView.get_view_name(), the class name without
// "View", split at capitals, then str.title(): "VRA" is "Vra"), the renderers it negotiates and its
// OPTIONS reply (DRF's SimpleMetadata).
// The sandbox and the compatibility path answer from here alike.
import { AUTH_TOKEN_PARSES, PARSES, type Parser } from '../drf/body.js'
import type { Renderer } from '../drf/negotiation.js'
import type { UpstreamEndpoint } from './endpoints.js'

export const VIEW_NAMES: Readonly<Record<UpstreamEndpoint, string>> = {
  cone: 'Cone',
  objects: 'Objects',
  objectlist: 'Object List',
  vrascores: 'Vra Scores',
  vrascoreslist: 'Vra Scores List',
  vratodo: 'Vra Todo',
  vratodolist: 'Vra Todo List',
  objectgroups: 'Tcs Object Groups',
  objectgroupslist: 'Tcs Object Groups List',
  objectgroupsdelete: 'Tcs Object Groups Delete',
  vrarank: 'Vra Rank',
  vraranklist: 'Vra Rank List',
  externalxmlist: 'External Crossmatches List',
  objectdetectionlist: 'Object Detection List',
  'auth-token': 'Obtain Expiring Auth Token'
}

/** The renderers a view negotiates: auth-token/ renders JSON only, so Accept: text/html is a 406 there. */
export function renderersOf (endpoint: UpstreamEndpoint): Renderer[] {
  return endpoint === 'auth-token' ? ['json'] : ['json', 'html']
}

/**
 * The Vary header of a view's answers, its refusals included (DRF's finalize_response adds it to every
 * response): Accept for a view with more than one renderer; auth-token/ (one renderer) authenticates by
 * reading the session, which adds Cookie.
 */
export function varyHeaderOf (endpoint: UpstreamEndpoint): string {
  return renderersOf(endpoint).length > 1 ? 'Accept' : 'Cookie'
}

/** The Allow header of a view: the API views declare get and post, ObtainAuthToken only post. */
export function allowOf (endpoint: UpstreamEndpoint): string {
  return endpoint === 'auth-token' ? 'POST, OPTIONS' : 'GET, POST, HEAD, OPTIONS'
}

/** The parsers a view tries in order: ObtainAuthToken lists form first, the API views JSON first. */
export function parsersOf (endpoint: UpstreamEndpoint): readonly Parser[] {
  return endpoint === 'auth-token' ? AUTH_TOKEN_PARSES : PARSES
}

/** SimpleMetadata.determine_metadata: the body of a view's OPTIONS reply. */
export function optionsMetadata (endpoint: UpstreamEndpoint): Record<string, unknown> {
  const isAuthToken = endpoint === 'auth-token'
  const meta: Record<string, unknown> = {
    name: VIEW_NAMES[endpoint],
    description: '',
    renders: renderersOf(endpoint).map((r) => r === 'json' ? 'application/json' : 'text/html'),
    parses: [...parsersOf(endpoint)]
  }
  if (isAuthToken) {
    // ObtainAuthToken has get_serializer(), so its POST fields are described.
    const field = (required: boolean, readOnly: boolean, label: string): Record<string, unknown> =>
      ({ type: 'string', required, read_only: readOnly, label })
    meta.actions = { POST: { username: field(true, false, 'Username'), password: field(true, false, 'Password'), token: field(false, true, 'Token') } }
  }
  return meta
}
