// ATLAS ids and sky geometry. Ids follow the observed layout: `1` + RA hhmmssss +
// Dec sign digit (1 = +, 0 = -) + Dec ddmmsss + 2 disambiguation digits, 19 digits in all.

export function encodeAtlasId (ra: number, dec: number, suffix: number): bigint {
  // RA in hundredths of a second of time, Dec in tenths of an arcsecond, truncated like a designation
  // (the epsilon keeps 16:16:00.21 from flooring to .20 through float error).
  const raCs = Math.floor((((ra % 360) + 360) % 360) / 15 * 360000 + 1e-6) % 8640000
  const hh = Math.floor(raCs / 360000)
  const mm = Math.floor(raCs / 6000) % 60
  const ssss = raCs % 6000
  const decDs = Math.floor(Math.abs(dec) * 36000 + 1e-6)
  const dd = Math.min(Math.floor(decDs / 36000), 90)
  const dm = Math.floor(decDs / 600) % 60
  const dsss = decDs % 600
  const text = '1' +
    String(hh).padStart(2, '0') + String(mm).padStart(2, '0') + String(ssss).padStart(4, '0') +
    (dec >= 0 ? '1' : '0') +
    String(dd).padStart(2, '0') + String(dm).padStart(2, '0') + String(dsss).padStart(3, '0') +
    String(suffix % 100).padStart(2, '0')
  return BigInt(text)
}

/** The RA/Dec (degrees) that an id's digits encode. */
export function decodeAtlasId (id: bigint): { ra: number, dec: number } {
  const t = id.toString()
  const ra = (Number(t.slice(1, 3)) + Number(t.slice(3, 5)) / 60 + Number(t.slice(5, 9)) / 100 / 3600) * 15
  const sign = t.charAt(9) === '1' ? 1 : -1
  const dec = sign * (Number(t.slice(10, 12)) + Number(t.slice(12, 14)) / 60 + Number(t.slice(14, 17)) / 10 / 3600)
  return { ra, dec }
}

const RAD = Math.PI / 180

/** True angular separation in arcseconds (haversine, stable for small angles). */
export function separationArcsec (ra1: number, dec1: number, ra2: number, dec2: number): number {
  const dDec = (dec2 - dec1) * RAD
  const dRa = (ra2 - ra1) * RAD
  const a = Math.sin(dDec / 2) ** 2 + Math.cos(dec1 * RAD) * Math.cos(dec2 * RAD) * Math.sin(dRa / 2) ** 2
  return 2 * Math.asin(Math.min(1, Math.sqrt(a))) / RAD * 3600
}

/** Lowercase base-26 letters as in ATLAS designations (aaa, aab, ...), at least `width` letters. */
export function base26 (n: number, width = 3): string {
  let out = ''
  let v = n
  do {
    out = String.fromCharCode(97 + (v % 26)) + out
    v = Math.floor(v / 26)
  } while (v > 0)
  return out.padStart(width, 'a')
}
