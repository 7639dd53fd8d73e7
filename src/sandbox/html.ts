// The HTML the upstream answers with: its own error templates (atlas/templates/{400,404,500}.html,
// which extend base_bootstrap_login.html), Apache's 414 page, and DRF's browsable API page.
import { STATUS_CODES } from 'node:http'

export const HTML_TYPE = 'text/html; charset=utf-8'

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function errorPage (prefix: string, title: string, heading: string, text: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1, shrink-to-fit=no">
  <title>${title}</title>
</head>
<body>
<nav class="navbar navbar-expand-md navbar-dark bg-dark"><a class="navbar-brand" href="${escapeHtml(prefix)}">ATLAS</a></nav>

<div class="container-fluid h-100">
  <div class="row justify-content-center align-items-center h-100">
    <div class="col-lg-4 col-md-6 col-sm-12">

    <h1 class="text-center">${heading}</h1>

    <p class="text-center">${text}</p>

    </div>
  </div>
</div>
</body>
</html>
`
}

/** The site root that the templates link to: the mount prefix without its `api/` part. */
function siteRoot (prefix: string): string {
  return prefix.replace(/api\/$/, '')
}

export function page404 (prefix: string): string {
  return errorPage(siteRoot(prefix), 'Page not found', 'Error 404: Page not found', 'Apologies - the page you requested could not be found.')
}

export function page500 (prefix: string): string {
  return errorPage(siteRoot(prefix), 'Server Error', 'Error 500: Server Error', 'Apologies - something went wrong with the server. Try coming back later.')
}

export function page400 (prefix: string): string {
  return errorPage(siteRoot(prefix), 'Bad Request', 'Error 400: Bad Request', 'Apologies - something went wrong. This was a bad request.')
}

/** Apache's reply when the request line exceeds LimitRequestLine (8190 bytes). */
export function page414 (): string {
  return `<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>414 Request-URI Too Long</title>
</head><body>
<h1>Request-URI Too Long</h1>
<p>The requested URL's length exceeds the capacity
limit for this server.<br />
</p>
</body></html>
`
}

/** DRF's BrowsableAPIRenderer page (text/html), reduced to the response panel. */
export function browsablePage (viewName: string, status: number, headers: Record<string, string>, content: string): string {
  const headerLines = Object.entries(headers)
    .map(([k, v]) => `<b>${escapeHtml(k)}:</b> <span class="lit">${escapeHtml(v)}</span>`)
    .join('\n')
  return `<!DOCTYPE html>
<html>
  <head>
    <meta http-equiv="Content-Type" content="text/html; charset=utf-8"/>
    <meta name="robots" content="NONE,NOARCHIVE" />
    <title>${escapeHtml(viewName)} &ndash; Django REST framework</title>
  </head>
  <body>
    <div class="wrapper">
      <div class="navbar navbar-static-top navbar-inverse" role="navigation" aria-label="navbar">
        <div class="container">
          <span><a class='navbar-brand' rel="nofollow" href='https://www.django-rest-framework.org/'>Django REST framework</a></span>
        </div>
      </div>
      <div class="container">
        <div class="content-main" role="main" aria-label="main content">
          <div class="page-header"><h1>${escapeHtml(viewName)}</h1></div>
          <div class="response-info" aria-label="response info">
            <pre class="prettyprint"><span class="meta nocode"><b>HTTP ${status} ${String(STATUS_CODES[status])}</b>
${headerLines}

</span>${escapeHtml(content)}</pre>
          </div>
        </div>
      </div>
    </div>
  </body>
</html>
`
}
