// api/auth-token/: username/password in, {token, expires_in, refreshed} out. The
// existing token comes back until it is older than the user's window; then it is rotated, even for
// staff, and the old key stops working everywhere.
import { DjangoHtmlError } from '../drf/errors.js'
import { validate } from '../drf/fields.js'
import { SERIALIZERS } from '../upstream/serializers.js'
import { LOGIN_FAILED } from '../upstream/endpoints.js'
import type { EndpointDef } from './view.js'

export const authToken: EndpointDef = {
  name: 'auth-token',
  access: 'anon',
  post: async (ctx) => {
    // AuthTokenSerializer: username and password (not trimmed).
    const result = validate(SERIALIZERS['auth-token'], await ctx.data())
    if (!result.ok) return { status: 400, data: result.errors }
    const user = ctx.users.checkPassword(String(result.values.username), String(result.values.password))
    if (user === null) return { status: 400, data: { non_field_errors: [LOGIN_FAILED] } }
    // Reading the expiry of a group without a profile raises: a 500 page.
    if (user.group === 'no-profile') throw new DjangoHtmlError(500, 'GroupProfile.DoesNotExist')
    const now = ctx.nowUs()
    const windowS = ctx.users.windowS(user)
    const current = user.token
    const refreshed = current === null || now - current.createdUs > windowS * 1e6
    const token = refreshed ? ctx.users.rotate(user, now) : current
    return {
      status: 200,
      data: { token: token.key, expires_in: windowS - (ctx.nowUs() - token.createdUs) / 1e6, refreshed }
    }
  }
}
