// Upstream replies can quote what the gateway sent: a token in an error detail, the password in a
// rejected login. Every reply text is scrubbed of those secrets where it is produced (client.ts), so no
// log line, error message or compat body built from it can carry them.

export const REDACTED = '[Redacted]'
// Shorter values are left alone: they would match ordinary data. Tokens are 40 characters, and 8 is
// Django's default minimum password length.
const MIN_SECRET_LENGTH = 8

/** The forms in which a reply can quote `secret`: as sent, inside a JSON string, form-encoded. */
function formsOf (secret: string): Set<string> {
  return new Set([secret, JSON.stringify(secret).slice(1, -1), new URLSearchParams({ s: secret }).toString().slice(2)])
}

/** `text` with every form of every secret (of 8 characters or more) replaced by "[Redacted]". */
export function scrubSecrets (text: string, secrets: Iterable<string>): string {
  let out = text
  for (const secret of secrets) {
    if (secret.length < MIN_SECRET_LENGTH) continue
    for (const form of formsOf(secret)) {
      if (out.includes(form)) out = out.replaceAll(form, REDACTED)
    }
  }
  return out
}
