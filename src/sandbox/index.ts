// The sandbox ATLAS upstream: an imitation of the ATLAS Transient Server REST API with synthetic,
// seeded data, for demos, tests and benchmarks.
export { startSandbox } from './server.js'
export { sandboxOptionsFromEnv } from './options.js'
export type { EndpointName, Sandbox, SandboxFault, SandboxOptions } from './types.js'
