// The upstream's lists: the main detection lists are a fixed Python list on the server (objectlistid
// 0–13; `objectlistid` indexes it, so 14 or more is a 500 page), and custom lists are object groups by
// id, named here as the official client names them.

export const DETECTION_LISTS: Readonly<Record<string, number>> = {
  garbage: 0,
  follow_up: 1,
  good: 2,
  possible: 3,
  eyeball: 4,
  attic: 5,
  stars: 6,
  agn: 7,
  fasttrack: 8,
  movers: 9,
  magellanic_clouds: 10,
  pm_stars: 11,
  galcand: 12,
  duplicates: 13
}

/** The lists objectdetectionlist/ accepts: possible ("snooze"), eyeball, galcand. */
export const DETECTION_LIST_TARGETS = ['possible', 'eyeball', 'galcand'] as const

export const DEFAULT_CUSTOM_LISTS: Readonly<Record<string, number>> = {
  mookodi: 2,
  salt: 14,
  mookodi_live: 16,
  mookodi_peak: 17,
  cv: 40,
  mdwarf: 56,
  heloise: 72,
  vra: 73
}
