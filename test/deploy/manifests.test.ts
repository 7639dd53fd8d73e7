// The deploy files agree with each other and with the code: every YAML parses, and the image name,
// ports, probes, settings and the consumers file are consistent across Dockerfile, compose and
// Kubernetes. No cluster and no Docker needed.
import { test } from 'tap'
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { Value } from '@sinclair/typebox/value'
import { ConfigSchema } from '../../src/config.js'
import { ConsumersFileSchema } from '../../src/consumers/schema.js'
import { deriveToken, derivePassword } from '../../src/sandbox/auth.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DEPLOY = join(ROOT, 'deploy')
const K8S = join(DEPLOY, 'kubernetes')

type Doc = Record<string, unknown>

function yamlFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return yamlFiles(path)
    return /\.ya?ml$/.test(e.name) ? [path] : []
  })
}

function loadDocs (path: string): Doc[] {
  // merge: compose files use `<<:` merge keys (YAML 1.1), which Docker Compose resolves.
  return parseAllDocuments(readFileSync(path, 'utf8'), { merge: true }).map((d) => {
    if (d.errors.length > 0) throw new Error(`${path}: ${d.errors.map((e) => e.message).join('; ')}`)
    return d.toJS() as Doc
  })
}

/** Follows a path of keys and indexes through parsed YAML; undefined when any step is missing. */
function at (value: unknown, ...path: Array<string | number>): unknown {
  let current = value
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined
    current = (current as Record<string | number, unknown>)[key]
  }
  return current
}

const list = (value: unknown): unknown[] => Array.isArray(value) ? value : []
const imageName = (image: unknown): string => String(image).replace(/:[^/:]+$/, '')

const k8sDocs = yamlFiles(K8S).flatMap((path) => loadDocs(path))
const byKind = (kind: string) => k8sDocs.filter((d) => d.kind === kind)
const [deployment] = byKind('Deployment')
const [kustomization] = byKind('Kustomization')
const container = at(deployment, 'spec', 'template', 'spec', 'containers', 0)
const httpPort = list(at(container, 'ports')).find((p) => at(p, 'name') === 'http')
const containerPort = Number(at(httpPort, 'containerPort'))
const containerEnv = new Map(list(at(container, 'env')).map((e) => [String(at(e, 'name')), at(e, 'value')]))
const compose = loadDocs(join(DEPLOY, 'docker-compose.yml'))[0]
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')

/** A probe or Service port given by name or number, as the number it means. */
function portNumber (port: unknown): number {
  if (port === 'http') return containerPort
  return Number(port)
}

test('every YAML file under deploy/ parses (multi-document aware)', async (t) => {
  const files = yamlFiles(DEPLOY)
  t.ok(files.length >= 9, `found ${files.length} YAML files`)
  for (const file of files) {
    t.doesNotThrow(() => loadDocs(file), relative(ROOT, file))
  }
})

test('kustomization lists every manifest and nothing missing', async (t) => {
  const resources = list(at(kustomization, 'resources')).map(String)
  for (const r of resources) t.ok(existsSync(join(K8S, r)), `${r} exists`)
  const kinds = new Set(k8sDocs.map((d) => d.kind))
  for (const kind of ['Deployment', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'ConfigMap', 'Secret']) {
    t.ok(kinds.has(kind), `a ${kind} is present`)
  }
})

test('one image name: Deployment, kustomization and compose', async (t) => {
  const name = imageName(at(container, 'image'))
  t.equal(name, 'atlas-gateway')
  t.ok(list(at(kustomization, 'images')).some((i) => at(i, 'name') === name), 'kustomization rewrites that image')
  t.equal(imageName(at(compose, 'services', 'gateway', 'image')), name, 'compose builds that image for the gateway')
  t.equal(at(compose, 'services', 'gateway', 'build', 'dockerfile'), 'Dockerfile')
})

test('ports agree: Dockerfile EXPOSE and PORT, containerPort, the PORT env, probes and the Service', async (t) => {
  t.equal(containerPort, 8080)
  t.equal(Number(/^EXPOSE\s+(\d+)/m.exec(dockerfile)?.[1]), containerPort, 'Dockerfile EXPOSE')
  t.equal(Number(/^\s*PORT=(\d+)/m.exec(dockerfile)?.[1]), containerPort, 'Dockerfile ENV PORT')
  t.equal(Number(containerEnv.get('PORT')), containerPort, 'Deployment PORT env')
  t.equal(at(container, 'readinessProbe', 'httpGet', 'path'), '/readyz')
  t.equal(portNumber(at(container, 'readinessProbe', 'httpGet', 'port')), containerPort)
  t.equal(at(container, 'livenessProbe', 'httpGet', 'path'), '/healthz')
  t.equal(portNumber(at(container, 'livenessProbe', 'httpGet', 'port')), containerPort)
  const [service] = byKind('Service')
  t.equal(portNumber(at(service, 'spec', 'ports', 0, 'targetPort')), containerPort, 'Service targetPort')
  t.same(at(service, 'spec', 'selector'), at(deployment, 'spec', 'selector', 'matchLabels'))
  t.equal(Number(at(compose, 'services', 'gateway', 'environment', 'PORT')), containerPort, 'compose PORT')
  t.match(readFileSync(join(DEPLOY, 'haproxy.cfg'), 'utf8'), new RegExp(`gateway:${containerPort}\\b`), 'haproxy targets that port')
  t.match(dockerfile, /HEALTHCHECK[\s\S]*\/healthz/, 'the image health check hits /healthz')
  t.match(dockerfile, /^CMD \["node", "dist\/server\.js"\]$/m)
  t.match(dockerfile, /^USER node$/m)
})

test('the Deployment is safe to run and to roll', async (t) => {
  const pod = at(deployment, 'spec', 'template', 'spec')
  t.equal(at(pod, 'securityContext', 'runAsNonRoot'), true)
  t.type(at(pod, 'securityContext', 'runAsUser'), 'number', 'numeric uid, so runAsNonRoot can be verified')
  t.equal(at(container, 'securityContext', 'readOnlyRootFilesystem'), true)
  t.equal(at(container, 'securityContext', 'allowPrivilegeEscalation'), false)
  t.equal(at(deployment, 'spec', 'strategy', 'type'), 'RollingUpdate')
  for (const kind of ['requests', 'limits']) {
    t.ok(at(container, 'resources', kind, 'memory'), `memory ${kind}`)
    t.ok(at(container, 'resources', kind, 'cpu'), `cpu ${kind}`)
  }
  const grace = Number(at(pod, 'terminationGracePeriodSeconds'))
  t.ok(grace * 1000 > Number(containerEnv.get('SHUTDOWN_TIMEOUT_MS')), 'the grace period outlasts SHUTDOWN_TIMEOUT_MS')
  const [hpa] = byKind('HorizontalPodAutoscaler')
  t.equal(hpa?.apiVersion, 'autoscaling/v2')
  t.equal(at(hpa, 'spec', 'scaleTargetRef', 'name'), at(deployment, 'metadata', 'name'))
  const [pdb] = byKind('PodDisruptionBudget')
  t.same(at(pdb, 'spec', 'selector', 'matchLabels'), at(deployment, 'spec', 'selector', 'matchLabels'))
})

test('settings named in the manifests exist, secrets come from the Secret, the consumers file is valid', async (t) => {
  const known = new Set(Object.keys(ConfigSchema.properties))
  const gatewayEnv = Object.keys(at(compose, 'services', 'gateway', 'environment') as Record<string, unknown>)
  for (const name of [...containerEnv.keys(), ...gatewayEnv]) {
    if (name === 'NODE_OPTIONS') continue
    t.ok(known.has(name), `${name} is a setting`)
  }
  const [secret] = byKind('Secret')
  const secretKeys = Object.keys(at(secret, 'stringData') as Record<string, unknown>)
  for (const name of ['ATLAS_TOKEN', 'ATLAS_USERNAME', 'ATLAS_PASSWORD']) {
    t.ok(secretKeys.includes(name), `the Secret holds ${name}`)
    t.notOk(containerEnv.has(name), `${name} is not a plain env value`)
    t.ok(known.has(name))
  }
  t.equal(at(container, 'envFrom', 0, 'secretRef', 'name'), at(secret, 'metadata', 'name'))

  const [configMap] = byKind('ConfigMap')
  const mount = list(at(container, 'volumeMounts')).find((m) => at(m, 'name') === 'consumers')
  t.equal(containerEnv.get('CONSUMERS_FILE'), `${String(at(mount, 'mountPath'))}/consumers.yaml`)
  const volume = list(at(deployment, 'spec', 'template', 'spec', 'volumes')).find((v) => at(v, 'name') === 'consumers')
  t.equal(at(volume, 'configMap', 'name'), at(configMap, 'metadata', 'name'))
  const consumersFiles = [
    String(at(configMap, 'data', 'consumers.yaml')),
    readFileSync(join(DEPLOY, 'consumers.yaml'), 'utf8')
  ]
  for (const text of consumersFiles) {
    const parsed = parseAllDocuments(text)[0]?.toJS() as unknown
    t.ok(Value.Check(ConsumersFileSchema, parsed), 'a valid consumers file')
  }
})

test('compose: two gateway replicas behind one port, Redis, and the sandbox as the upstream', async (t) => {
  const services = at(compose, 'services') as Record<string, unknown>
  const gateway = services.gateway
  t.equal(at(gateway, 'deploy', 'replicas'), 2)
  t.notOk(at(gateway, 'ports'), 'replicas publish no port of their own')
  const published = Object.values(services).filter((s) => list(at(s, 'ports')).length > 0)
  t.equal(published.length, 1, 'one service (the load balancer) publishes a port')
  t.ok(services.redis, 'redis')
  t.match(at(gateway, 'environment', 'REDIS_URL'), /^redis:\/\/redis:6379/)
  const sandbox = services.sandbox
  t.same(at(sandbox, 'command'), ['node', 'dist/cli/sandbox.js'])
  t.equal(imageName(at(sandbox, 'image')), imageName(at(gateway, 'image')), 'the sandbox runs from the same image')
  const sandboxEnv = at(sandbox, 'environment') as Record<string, string>
  t.equal(at(gateway, 'environment', 'ATLAS_BASE_URL'), `http://sandbox:${sandboxEnv.SANDBOX_PORT}/api/`)
  // The sandbox derives its users' tokens and passwords from its seed; the gateway must hold that seed's.
  const seed = Number(sandboxEnv.SANDBOX_SEED)
  t.equal(at(gateway, 'environment', 'ATLAS_TOKEN'), deriveToken(seed, 'sandbox_write'))
  t.equal(at(gateway, 'environment', 'ATLAS_USERNAME'), 'sandbox_write')
  t.equal(at(gateway, 'environment', 'ATLAS_PASSWORD'), derivePassword(seed, 'sandbox_write'))
})
