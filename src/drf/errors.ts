// The two ways the upstream fails: DRF exceptions (JSON `{"detail": ...}` through the negotiated
// renderer, with DRF's headers) and Django-level failures (an HTML page, DRF never sees them).

export class ApiException extends Error {
  constructor (
    readonly status: number,
    readonly detail: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(detail)
  }
}

/** An unhandled exception (500) or a SuspiciousOperation such as an oversized form (400). */
export class DjangoHtmlError extends Error {
  constructor (readonly status: 400 | 500, reason: string) {
    super(reason)
  }
}
