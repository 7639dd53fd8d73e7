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
import { createListCatalog } from '../../src/lists.js'
import { ALL_LISTS } from '../../src/consumers/scopes.js'

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
const haproxy = readFileSync(join(DEPLOY, 'haproxy.cfg'), 'utf8')
const composeGateway = at(compose, 'services', 'gateway')
const composeEnv = (name: string): unknown => at(composeGateway, 'environment', name)

/** A compose duration such as `25s`, `1m30s` or `500ms`, in milliseconds. */
function durationMs (text: unknown): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
  const parts = [...String(text).matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)]
  if (parts.length === 0) return Number.NaN
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * (units[unit ?? ''] ?? Number.NaN), 0)
}

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
  t.match(haproxy, new RegExp(`gateway:${containerPort}\\b`), 'haproxy targets that port')
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
    if (name === 'NODE_OPTIONS' || name === 'MALLOC_ARENA_MAX') continue
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
  // Each consumers file with the CUSTOM_LISTS of the gateway that reads it.
  const consumersFiles = [
    ['Kubernetes', String(at(configMap, 'data', 'consumers.yaml')), containerEnv.get('CUSTOM_LISTS')],
    ['compose', readFileSync(join(DEPLOY, 'consumers.yaml'), 'utf8'), composeEnv('CUSTOM_LISTS')]
  ] as const
  for (const [where, text, customLists] of consumersFiles) {
    const parsed = parseAllDocuments(text)[0]?.toJS() as unknown
    t.ok(Value.Check(ConsumersFileSchema, parsed), `${where}: a valid consumers file`)
    // A grant of a list the catalogue lacks is a write that always answers 404 Unknown custom list.
    const custom = new Set(createListCatalog(String(customLists ?? '')).all.filter((l) => l.kind === 'custom').map((l) => l.name))
    for (const consumer of list(at(parsed, 'consumers'))) {
      for (const name of list(at(consumer, 'lists')).map(String).filter((n) => n !== ALL_LISTS)) {
        t.ok(custom.has(name), `${where}: ${String(at(consumer, 'id'))} is granted "${name}", a custom list of that gateway's CUSTOM_LISTS`)
      }
    }
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

test('readiness means "this replica can take traffic": probes and checks hit the right endpoint', async (t) => {
  t.equal(at(container, 'readinessProbe', 'httpGet', 'path'), '/readyz', 'Kubernetes readiness: /readyz')
  t.equal(at(container, 'livenessProbe', 'httpGet', 'path'), '/healthz', 'Kubernetes liveness: /healthz')
  t.match(haproxy, /^\s*option httpchk GET \/readyz$/m, 'haproxy takes replicas out on /readyz')
  t.match(JSON.stringify(at(composeGateway, 'healthcheck', 'test')), /\/healthz/, 'the compose health check is liveness (/healthz)')
  t.notMatch(JSON.stringify(at(composeGateway, 'healthcheck', 'test')), /\/readyz/)
  t.notOk(at(deployment, 'spec', 'template', 'spec', 'containers', 0, 'lifecycle', 'preStop'), 'no preStop sleep: SHUTDOWN_DRAIN_MS drains in the process')
})

test('stopping: a drain, haproxy retries elsewhere, and stop timeouts longer than drain + shutdown', async (t) => {
  for (const [where, drain, shutdown] of [
    ['Kubernetes', containerEnv.get('SHUTDOWN_DRAIN_MS'), containerEnv.get('SHUTDOWN_TIMEOUT_MS')],
    ['compose', composeEnv('SHUTDOWN_DRAIN_MS'), composeEnv('SHUTDOWN_TIMEOUT_MS')]
  ] as const) {
    t.ok(Number(drain) > 0, `${where} drains before closing (SHUTDOWN_DRAIN_MS ${String(drain)})`)
    t.ok(Number(shutdown) > 0, `${where} sets SHUTDOWN_TIMEOUT_MS`)
  }
  const k8sBudget = Number(containerEnv.get('SHUTDOWN_DRAIN_MS')) + Number(containerEnv.get('SHUTDOWN_TIMEOUT_MS'))
  const grace = Number(at(deployment, 'spec', 'template', 'spec', 'terminationGracePeriodSeconds')) * 1000
  t.ok(grace > k8sBudget, `terminationGracePeriodSeconds (${grace} ms) > drain + shutdown (${k8sBudget} ms)`)
  const composeBudget = Number(composeEnv('SHUTDOWN_DRAIN_MS')) + Number(composeEnv('SHUTDOWN_TIMEOUT_MS'))
  const stop = durationMs(at(composeGateway, 'stop_grace_period'))
  t.ok(stop > composeBudget, `compose stop_grace_period (${stop} ms) > drain + shutdown (${composeBudget} ms)`)

  t.match(haproxy, /^\s*option redispatch\b/m, 'haproxy redispatches a retried request to another replica')
  t.match(haproxy, /^\s*retry-on .*\bconn-failure\b.*\b503\b/m, 'and retries on connection failures and 503')
  t.match(haproxy, /^\s*http-request disable-l7-retry unless METH_GET$/m, 'writes are not replayed after an HTTP answer')
  const server = /^\s*server-template .* check .*$/m.exec(haproxy)?.[0] ?? ''
  const inter = Number(/\binter (\d+)s\b/.exec(server)?.[1]) * 1000
  const fall = Number(/\bfall (\d+)\b/.exec(server)?.[1] ?? 3)
  t.ok(inter * fall < Number(composeEnv('SHUTDOWN_DRAIN_MS')), `haproxy marks a draining replica down (${fall} × ${inter} ms) within the drain`)
})

test('Prometheus scrapes with METRICS_TOKEN: a ServiceMonitor with the bearer token from the Secret', async (t) => {
  const [monitor] = byKind('ServiceMonitor')
  const [service] = byKind('Service')
  const [secret] = byKind('Secret')
  t.equal(monitor?.apiVersion, 'monitoring.coreos.com/v1')
  const endpoint = at(monitor, 'spec', 'endpoints', 0)
  t.equal(at(endpoint, 'path'), '/metrics')
  t.ok(list(at(service, 'spec', 'ports')).some((p) => at(p, 'name') === at(endpoint, 'port')), 'it names a port of the Service')
  const serviceLabels = at(service, 'metadata', 'labels') as Record<string, unknown> | undefined
  for (const [k, v] of Object.entries(at(monitor, 'spec', 'selector', 'matchLabels') as Record<string, unknown>)) {
    t.equal(serviceLabels?.[k], v, `it selects the Service (${k})`)
  }
  t.equal(at(endpoint, 'authorization', 'type'), 'Bearer')
  t.equal(at(endpoint, 'authorization', 'credentials', 'name'), at(secret, 'metadata', 'name'), 'the token comes from the gateway Secret')
  const key = String(at(endpoint, 'authorization', 'credentials', 'key'))
  t.equal(key, 'METRICS_TOKEN')
  t.ok(key in (at(secret, 'stringData') as Record<string, unknown>), 'which holds METRICS_TOKEN')
  t.ok('METRICS_TOKEN' in ConfigSchema.properties)
  const annotations = at(deployment, 'spec', 'template', 'metadata', 'annotations') as Record<string, unknown> | undefined
  t.notOk(annotations?.['prometheus.io/scrape'], 'no annotation-based scraping, which cannot send the token')
  t.notOk(list(at(kustomization, 'resources')).includes('servicemonitor.yaml'), 'optional: the kind exists only with the Prometheus Operator')
})

test('the image: Node 22 LTS slim, no `# syntax` line, HOST=0.0.0.0 set although the default is loopback', async (t) => {
  t.match(dockerfile, /^ARG NODE_IMAGE=node:22-bookworm-slim$/m)
  t.equal([...dockerfile.matchAll(/^FROM \$\{NODE_IMAGE\}/gm)].length, 2, 'both stages use it')
  t.notMatch(dockerfile, /^#\s*syntax\s*=/m, 'no BuildKit frontend to pull (offline builds work)')
  t.equal(ConfigSchema.properties.HOST.default, '127.0.0.1', 'with no settings the gateway binds loopback')
  t.match(dockerfile, /^\s*HOST=0\.0\.0\.0\b/m, 'the image sets HOST=0.0.0.0 explicitly')
  t.equal(containerEnv.get('HOST'), '0.0.0.0', 'so does the Deployment')
  t.equal(composeEnv('HOST'), '0.0.0.0', 'and compose')
})

test('reload instructions work in the slim image (no `kill` binary there)', async (t) => {
  const docs = [
    join(ROOT, 'Dockerfile'), join(ROOT, 'README.md'), join(K8S, 'README.md'), join(DEPLOY, 'haproxy.cfg'), ...yamlFiles(DEPLOY)
  ]
  for (const path of docs) {
    t.notMatch(readFileSync(path, 'utf8'), /(exec\b[^\n]*--\s*kill\b|\bkill -(HUP|s HUP|1)\b)/, `${relative(ROOT, path)} does not tell anyone to run kill`)
  }
  t.match(readFileSync(join(K8S, 'README.md'), 'utf8'), /node -e\s+"process\.kill\(1, 'SIGHUP'\)"/, 'the Kubernetes README reloads through node')
})

/** A Kubernetes memory quantity (`512Mi`, `1Gi`, `600M`) in MiB. */
function mebibytes (quantity: unknown): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(String(quantity))
  if (m === null) return Number.NaN
  const bytes: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, K: 1e3, M: 1e6, G: 1e9, '': 1 }
  return Number(m[1]) * (bytes[m[2] ?? ''] ?? Number.NaN) / 1024 ** 2
}

// What a process needs besides its old space and CACHE_MAX_BYTES: the young generation (up to 2 ×
// 16 MiB semi-spaces on 64-bit), code, sockets, zlib contexts, Buffers of answers in flight.
const NON_HEAP_MIB = 128

test('the heap limit: the same in the image and the Deployment, and it fits the memory limit with L1', async (t) => {
  const heapOf = (options: unknown): number => Number(/--max-old-space-size=(\d+)/.exec(String(options))?.[1])
  const image = heapOf(/^\s*NODE_OPTIONS=(\S+)/m.exec(dockerfile)?.[1])
  const pod = heapOf(containerEnv.get('NODE_OPTIONS'))
  t.ok(image > 0, `the Dockerfile sets --max-old-space-size (${image} MiB)`)
  t.equal(pod, image, 'the Deployment sets the same heap limit')
  const cacheBytes = Number(containerEnv.get('CACHE_MAX_BYTES') ?? ConfigSchema.properties.CACHE_MAX_BYTES.default)
  const limit = mebibytes(at(container, 'resources', 'limits', 'memory'))
  const needed = pod + cacheBytes / 1024 ** 2 + NON_HEAP_MIB
  t.ok(needed <= limit, `heap ${pod} MiB + CACHE_MAX_BYTES ${cacheBytes / 1024 ** 2} MiB + ${NON_HEAP_MIB} MiB = ${needed} MiB ≤ the ${limit} MiB memory limit`)
  t.ok(pod >= limit / 2, 'and uses at least half of it: a much smaller heap only trades memory for GC time')
  const arenas = /^\s*MALLOC_ARENA_MAX=(\d+)/m.exec(dockerfile)?.[1]
  t.equal(arenas, '2', 'the image limits glibc to two malloc arenas')
  t.equal(containerEnv.get('MALLOC_ARENA_MAX'), arenas, 'and so does the Deployment')
  t.equal(mebibytes('512Mi'), 512)
  t.equal(mebibytes('1Gi'), 1024)
})

test('without Redis, the image writes its audit and usage files in a volume its user owns, not in the read-only /app', async (t) => {
  const user = /^USER\s+(\S+)/m.exec(dockerfile)?.[1]
  t.equal(user, 'node')
  for (const name of ['AUDIT_FILE', 'USAGE_FILE']) {
    const path = new RegExp(`^\\s*(?:ENV\\s+)?${name}=(\\S+?)\\s*\\\\?$`, 'm').exec(dockerfile)?.[1]
    t.ok(path?.startsWith('/'), `${name} is set to an absolute path (${String(path)}); the default is relative to WORKDIR /app`)
    const dir = path?.slice(0, path.lastIndexOf('/')) ?? '(none)'
    t.match(dockerfile, new RegExp(`chown\\s+${user}(?::${user})?\\s+${dir}\\b`), `${dir} is owned by ${user}`)
    t.match(dockerfile, new RegExp(`^VOLUME\\s+\\[?"?${dir}"?\\]?`, 'm'), `${dir} is a volume (writable under a read-only root)`)
    // Kubernetes does not promise the image's VOLUME: CRI-O (image_volumes=mkdir, its default) and
    // containerd with ignore_image_defined_volumes leave the directory on the read-only root filesystem.
    const mount = list(at(container, 'volumeMounts')).find((m) => at(m, 'mountPath') === dir)
    t.ok(mount, `the Deployment mounts a volume at ${dir} (its root filesystem is read-only)`)
    t.not(at(mount, 'readOnly'), true, `${dir} is mounted writable`)
    const volume = list(at(deployment, 'spec', 'template', 'spec', 'volumes')).find((v) => at(v, 'name') === at(mount, 'name'))
    t.ok(at(volume, 'emptyDir') !== undefined || at(volume, 'persistentVolumeClaim') !== undefined, `${dir} is an emptyDir or a PersistentVolumeClaim`)
  }
})
