// The HTML shell of the landing and status pages: one document, its style inline, no script and no
// external asset (the pages work offline and under a policy that loads nothing).
import { esc } from './svg.js'

/** Sent with every page: nothing is loaded from anywhere, no script runs. */
export const PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const STYLE = 'body{font:15px/1.5 system-ui,sans-serif;color:#1d2330;max-width:1100px;margin:0 auto;padding:1.2em 1.5em;background:#fff}' +
  'h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #dde2ea;padding-bottom:.2em}' +
  'code,pre{font:13px ui-monospace,monospace;background:#f3f5f8;border-radius:4px}code{padding:.1em .3em}pre{padding:.8em;overflow-x:auto}' +
  'a{color:#0b63c4}table{border-collapse:collapse}td,th{padding:.2em .9em .2em 0;text-align:left;vertical-align:top}th{color:#555;font-weight:600}' +
  '.muted{color:#667}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1em}.card{border:1px solid #e1e5ec;border-radius:6px;padding:.6em .9em}' +
  '.ok{color:#11803a}.bad{color:#c0341d}.warn{color:#b36b00}svg{max-width:100%;height:auto}nav a{margin-right:1em}'

export interface Page { title: string, body: string, refreshS?: number }

/** A whole HTML document. `body` is HTML built by the caller (every dynamic text escaped with esc). */
export function page ({ title, body, refreshS }: Page): string {
  return '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width,initial-scale=1">' +
    (refreshS === undefined ? '' : `<meta http-equiv="refresh" content="${refreshS}">`) +
    `<title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>\n`
}
