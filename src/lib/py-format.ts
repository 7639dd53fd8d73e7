// Python's '%f' formatting, which the upstream uses to write a threshold into its SQL (objects/ `mjd`
// for detections and non-detections): the gateway's filter, its compatibility path and the sandbox
// compare with the value it yields.

/** Python's '%f' % x: the exact binary value rounded to six decimals, a tie to the even digit. */
export function pyPercentF (x: number): string {
  if (Number.isNaN(x)) return 'nan'
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf'
  const text = x.toFixed(6)
  // toFixed rounds a tie up (away from zero); a tie is exact within 100 digits, so this finds it.
  const exact = x.toFixed(100)
  const dot = exact.indexOf('.')
  if (!/^50*$/.test(exact.slice(dot + 7))) return text
  const truncated = exact.slice(0, dot + 7)
  // The even neighbour: the truncated value when its last digit is even, else the one toFixed chose.
  return Number(truncated.charAt(truncated.length - 1)) % 2 === 0 ? truncated : text
}
