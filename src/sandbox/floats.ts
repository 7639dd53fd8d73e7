// Python's json writes a float as its repr: an integral one keeps ".0" (30.0), a small or large one
// takes an exponent (1e-05, 1e+16), where JavaScript writes 30, 0.00001 and 10000000000000000. The
// data is generated as plain numbers; the columns that are floats upstream (as the recorded corpus
// types them) are rewritten in the JSON text. Each set is for one kind of row, where no key is an
// integer elsewhere (`rank` is an integer in list and Sherlock rows, a float in the VRA tables).
import { pyFloatRepr } from '../drf/pystr.js'

const XM = ['host_z', 'mag', 'object_z', 'separation']
const SHERLOCK_BANDS = ['u', 'b', 'v', 'r', 'i', 'j', 'h', 'k', 'g', 'unkmag', 'field_u', 'field_g', 'field_r', 'field_i', 'field_z', 'field_y']

export type FloatRows = 'object' | 'lc' | 'lcnondets' | 'fp' | 'tail' | 'cone' | 'objectlist' | 'externalxmlist' | 'vraranklist' | 'vrascoreslist' | 'auth-token'

const FLOAT_KEYS: Readonly<Record<FloatRows, readonly string[]>> = {
  object: ['ra', 'dec', 'vra', 'rb_pix'],
  lc: ['mag', 'magerr', 'mjd', 'exptime', 'zp', 'ra', 'dec', 'mag5sig', 'x', 'y', 'major', 'minor', 'phi', 'chin', 'wpflx', 'dflx'],
  lcnondets: ['mjd', 'exptime', 'zp', 'mag5sig'],
  fp: ['mjd_obs', 'ra', 'dec', 'mag', 'dm', 'snr', 'zp', 'x', 'y', 'peakval', 'skyval', 'peakfit', 'dpeak', 'skyfit', 'flux', 'dflux',
    'chin', 'major', 'minor', 'snrdet', 'snrlimit', 'apfit', 'uJy', 'duJy', 'texp'],
  // The four crossmatch blocks of a record: Sherlock matches, then TNS and external crossmatches.
  tail: [...XM, 'separationarcsec', 'northseparationarcsec', 'eastseparationarcsec', 'z', 'scale', 'distance', 'distance_modulus',
    'photoz', 'photozerr', 'physical_separation_kpc', 'rankscore', 'major_axis_arcsec', 'direct_distance', 'direct_distance_scale',
    'direct_distance_modulus', 'radeg', 'decdeg', 'original_search_radius_arcsec', 'transientabsmag',
    ...SHERLOCK_BANDS, ...SHERLOCK_BANDS.map((band) => band === 'unkmag' ? 'unkmagerr' : `${band}err`)],
  cone: ['separation'],
  objectlist: ['ra', 'dec', 'ra_avg', 'dec_avg', 'earliest_mjd', 'earliest_mag', 'latest_mjd', 'latest_mag', 'separation', 'vra', 'rb_pix', 'rms'],
  externalxmlist: XM,
  vraranklist: ['rank', 'rank_alt1'],
  vrascoreslist: ['preal', 'pgal', 'pfast', 'rank', 'rank_alt1'],
  'auth-token': ['expires_in']
}

const PATTERNS = new Map(Object.entries(FLOAT_KEYS).map(([rows, keys]) =>
  [rows, new RegExp(`"(${keys.join('|')})":(-?\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?)(?=[,}])`, 'g')]))

/** The kinds of rows with float columns. */
export function hasFloats (rows: string): rows is FloatRows {
  return PATTERNS.has(rows)
}

/** JSON text (of one kind of row) with its float columns written as Python writes them. */
export function pythonFloats (json: string, rows: FloatRows): string {
  // Every kind has a pattern (PATTERNS is built from FLOAT_KEYS).
  const pattern = PATTERNS.get(rows) as RegExp
  return json.replace(pattern, (_match, key: string, num: string) => `"${key}":${pyFloatRepr(Number(num))}`)
}
