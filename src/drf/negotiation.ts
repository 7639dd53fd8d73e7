// DRF content negotiation (rest_framework/negotiation.py): the Accept header picks a renderer, most
// specific media ranges first; `?format=` narrows the renderers before that. No match → 406.

export type Renderer = 'json' | 'html'

const RENDERER_MEDIA: Record<Renderer, { main: string, sub: string, format: string }> = {
  json: { main: 'application', sub: 'json', format: 'json' },
  html: { main: 'text', sub: 'html', format: 'api' }
}

interface MediaType {
  main: string
  sub: string
  precedence: number
}

function parseMediaType (text: string): MediaType {
  const [full = '', ...params] = text.split(';')
  const [main = '', sub = ''] = full.trim().toLowerCase().split('/', 2)
  const paramKeys = params.map((p) => p.replace(/=.*$/s, '').trim().toLowerCase()).filter((k) => k !== '')
  let precedence = 3
  if (main === '*') precedence = 0
  else if (sub === '*') precedence = 1
  else if (paramKeys.every((k) => k === 'q')) precedence = 2
  return { main, sub, precedence }
}

/** _MediaType.match with the renderer's type (no parameters) on the left. */
function matches (renderer: Renderer, accepted: MediaType): boolean {
  const r = RENDERER_MEDIA[renderer]
  if (accepted.sub !== '*' && accepted.sub !== r.sub) return false
  if (accepted.main !== '*' && accepted.main !== r.main) return false
  return true
}

export type Negotiation = { renderer: Renderer } | { error: 'not-found' | 'not-acceptable' }

export function negotiate (accept: string | undefined, format: string | undefined, available: readonly Renderer[]): Negotiation {
  let renderers = available
  if (format !== undefined && format !== '') {
    renderers = available.filter((r) => RENDERER_MEDIA[r].format === format)
    // filter_renderers raises Http404 when no renderer has that format.
    if (renderers.length === 0) return { error: 'not-found' }
  }
  const accepts = (accept ?? '*/*').split(',').map((token) => parseMediaType(token.trim()))
  for (const precedence of [3, 2, 1, 0]) {
    const set = accepts.filter((m) => m.precedence === precedence)
    for (const renderer of renderers) {
      if (set.some((m) => matches(renderer, m))) return { renderer }
    }
  }
  return { error: 'not-acceptable' }
}
