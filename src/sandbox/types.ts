// The public surface of the sandbox upstream: options, the running handle and fault injection.
// The gateway's tests depend on these names, so they change only together with those tests.

export const ENDPOINT_NAMES = [
  'cone', 'objects', 'objectlist', 'vrascores', 'vrascoreslist', 'vratodo', 'vratodolist',
  'objectgroups', 'objectgroupslist', 'objectgroupsdelete', 'vrarank', 'vraranklist',
  'externalxmlist', 'objectdetectionlist', 'auth-token'
] as const

export type EndpointName = typeof ENDPOINT_NAMES[number]

export interface SandboxOptions {
  host?: string
  port?: number
  prefix?: string
  objects?: number
  /** How many built records (~10 kB of JSON each) are kept; older ones are rebuilt on demand (default 5,000). */
  recordCache?: number
  seed?: number
  latencyMs?: number
  jitterMs?: number
  errorRate?: number
  tokenTtlS?: number
  throttleRate?: string
  staffThrottleRate?: string
  anonThrottleRate?: string
  maxObjectsPerCall?: number
  paths?: Partial<Record<EndpointName, string>>
  logger?: false
}

export type FaultKind = 'html500' | 'status' | 'reset' | 'hang' | 'slow-body' | 'delay' | 'throttle'

export interface SandboxFault {
  endpoint?: EndpointName
  /** How many matching requests get the fault (default 1). */
  times?: number
  kind: FaultKind
  status?: number
  body?: string
  contentType?: string
  delayMs?: number
  retryAfterS?: number
}

export type TokenRole = 'read' | 'write' | 'staff'

export interface SandboxUserInfo {
  username: string
  password: string
  role: string
}

export interface Sandbox {
  /** e.g. http://127.0.0.1:41234/api/ (ends with the prefix, trailing slash) */
  baseUrl: string
  /** e.g. http://127.0.0.1:41234 */
  origin: string
  tokens: { read: string, write: string, staff: string, expired: string }
  users: Record<string, SandboxUserInfo>
  /** Requests received per endpoint name ('unknown' for other paths). */
  calls: Map<string, number>
  totalCalls(): number
  /** The last requests' endpoint names and raw bodies (at most 1,000, oldest first), for tests. */
  received: Array<{ endpoint: string, body: string }>
  /** Clears the call counts and the received log. */
  resetCalls(): void
  ids(): bigint[]
  expireToken(role: TokenRole): void
  rotateToken(role: TokenRole): string
  setOptions(patch: Partial<Pick<SandboxOptions, 'latencyMs' | 'jitterMs' | 'errorRate' | 'throttleRate' | 'maxObjectsPerCall'>>): void
  inject(fault: SandboxFault): void
  clearFaults(): void
  resetThrottle(): void
  close(): Promise<void>
}
