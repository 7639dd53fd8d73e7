// The upstream's serializers (psat_server_web atlasapi/serializers.py): the fields each endpoint reads,
// with DRF's types, in declaration order (which is also the order of DRF's error keys). One table serves
// both sides: the sandbox validates with it, and the compatibility path validates with it before anything
// reaches the upstream.
import type { FieldSpec } from '../drf/fields.js'
import type { UpstreamEndpoint } from './endpoints.js'

const OBJECT_ID: FieldSpec = { name: 'objectid', kind: 'int', required: true }
const GROUP_ID: FieldSpec = { name: 'objectgroupid', kind: 'int', required: true }
const INSERT_DATE: FieldSpec = { name: 'insertdate', kind: 'datetime' }
const OBJECTS_CSV: FieldSpec = { name: 'objects', kind: 'char' }
const SINCE: FieldSpec = { name: 'datethreshold', kind: 'datetime' }
// The VRA lists' thresholds default to 1970-01-01 (0 µs since the epoch) and are inclusive.
const VRA_SINCE: FieldSpec = { name: 'datethreshold', kind: 'datetime', default: 0 }
const ID_THRESHOLD: FieldSpec = { name: 'idthreshold', kind: 'int', default: 0n }

export const SERIALIZERS: Readonly<Record<UpstreamEndpoint, readonly FieldSpec[]>> = {
  cone: [
    { name: 'ra', kind: 'float', required: true },
    { name: 'dec', kind: 'float', required: true },
    { name: 'radius', kind: 'float', required: true },
    { name: 'requestType', kind: 'choice', required: true, choices: ['count', 'all', 'nearest'] }
  ],
  objects: [{ name: 'objects', kind: 'char', required: true }, { name: 'mjd', kind: 'float' }],
  objectlist: [
    { name: 'objectlistid', kind: 'int', required: true },
    { name: 'getcustomlist', kind: 'bool', default: false },
    SINCE
  ],
  vrascoreslist: [OBJECTS_CSV, { name: 'debug', kind: 'bool', default: false }, VRA_SINCE, ID_THRESHOLD],
  vratodolist: [OBJECTS_CSV, VRA_SINCE, ID_THRESHOLD],
  vraranklist: [OBJECTS_CSV, VRA_SINCE],
  objectgroupslist: [{ name: 'objectid', kind: 'int' }, { name: 'objectgroupid', kind: 'int' }],
  externalxmlist: [{ name: 'externalObjects', kind: 'char' }],
  vrascores: [
    OBJECT_ID,
    { name: 'preal', kind: 'float' },
    { name: 'pgal', kind: 'float' },
    { name: 'pfast', kind: 'float' },
    { name: 'rank', kind: 'float' },
    { name: 'rank_alt1', kind: 'float' },
    { name: 'is_gal_cand', kind: 'int' },
    { name: 'debug', kind: 'bool', default: false },
    INSERT_DATE
  ],
  vratodo: [OBJECT_ID, INSERT_DATE],
  objectgroups: [OBJECT_ID, GROUP_ID],
  objectgroupsdelete: [OBJECT_ID, GROUP_ID],
  vrarank: [
    OBJECT_ID,
    { name: 'rank', kind: 'float', required: true },
    { name: 'rank_alt1', kind: 'float' },
    { name: 'is_gal_cand', kind: 'int' },
    INSERT_DATE
  ],
  objectdetectionlist: [OBJECT_ID, { name: 'objectlist', kind: 'int', required: true }, INSERT_DATE],
  'auth-token': [{ name: 'username', kind: 'char', required: true }, { name: 'password', kind: 'char', required: true, trim: false }]
}
