#!/usr/bin/env bash
# Image check: builds the Dockerfile's image and runs it as the README and deploy/kubernetes say it runs.
# Needs Docker, so CI (which has none) does not run it: it is not in .ci/run. scripts/install-check.sh
# is the Docker-free part that CI runs.
#   1. docker build --network=host (IMAGE_CHECK_SKIP_BUILD=1 reuses the image IMAGE_CHECK_IMAGE, default
#      atlas-gateway). Behind a TLS-intercepting proxy set IMAGE_CHECK_CA_FILE to its CA bundle: npm ci
#      gets it as a BuildKit secret through a temporary copy of the Dockerfile; it never enters a layer.
#   2. the image's config (USER, HEALTHCHECK, VOLUME) and size
#   3. the sandbox upstream, run from the image as deploy/docker-compose.yml runs it
#   4. the gateway as deploy/kubernetes/deployment.yaml runs it (IMAGE_CHECK_DEPLOYMENT to read another
#      file): its env, uid/gid, read-only root, no capabilities, no privilege escalation, memory and CPU
#      limits, terminationGracePeriodSeconds as the stop timeout, its volumes (emptyDir: a new directory
#      of mode 1777; the consumers configMap: deploy/consumers.yaml, read-only). A VOLUME of the image that the Deployment
#      does not mount is mounted read-only, as CRI-O leaves it. The Secret's values: compose's sandbox
#      credentials, a METRICS_TOKEN, and REDIS_URL only if IMAGE_CHECK_REDIS_URL is set (keys under the
#      prefix agw-image-check-<pid>:, deleted afterwards where redis-cli is installed).
#      Checks: PID 1 runs as uid 1000; /readyz and /healthz 200; the heap flags of NODE_OPTIONS in
#      effect; a v1 read with deploy/consumers.yaml's demo key; an audited write (without Redis: a line in
#      AUDIT_FILE); /metrics with the token; SIGHUP reload; Docker's HEALTHCHECK reaches "healthy";
#      docker stop: /readyz 503 while draining, exit 0 within the stop timeout; no error or EROFS logged.
#   5. the image's defaults, as `docker run atlas-gateway` (embedded sandbox, logged demo key): boots,
#      serves a v1 read, exits 0 on docker stop.
# Host networking only (--network=host): the gateway listens on IMAGE_CHECK_PORT (18080) and the sandbox
# on IMAGE_CHECK_SANDBOX_PORT (18081), both loopback-reachable. Set DOCKER to another client if needed.
# Prints "image-check: ok" and exits 0; exits 1 naming the failed step; exits 2 when Docker is absent.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DOCKER="${DOCKER:-docker}"
IMAGE="${IMAGE_CHECK_IMAGE:-atlas-gateway}"
PORT="${IMAGE_CHECK_PORT:-18080}"
SANDBOX_PORT="${IMAGE_CHECK_SANDBOX_PORT:-18081}"
DEPLOYMENT="${IMAGE_CHECK_DEPLOYMENT:-$ROOT/deploy/kubernetes/deployment.yaml}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/atlas-gateway-image-check.XXXXXX")"
NAME="agw-image-check-$$"
OBJECT=1161600211221604900
containers=()

step() { printf 'image-check: %s\n' "$*"; }
fail() { printf 'image-check: FAILED: %s\n' "$*" >&2; exit 1; }
cleanup() {
  for c in "${containers[@]}"; do "$DOCKER" rm -f "$c" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$DOCKER" info >/dev/null 2>&1 || { printf 'image-check: skipped: no Docker daemon reachable with %s\n' "$DOCKER" >&2; exit 2; }
command -v curl >/dev/null || fail "curl is needed"
cd "$ROOT"

ms_now() { date +%s%3N; }
http() { curl -sS -o "$WORK/body" -w '%{http_code}' "$@"; }
# Waits up to $2 seconds for $1 (a container) to log a line matching $3.
wait_log() {
  for _ in $(seq 1 $(($2 * 10))); do
    "$DOCKER" logs "$1" 2>&1 | grep -qE "$3" && return 0
    [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$1")" = "true" ] || { "$DOCKER" logs "$1" >&2; fail "$1 exited before logging /$3/"; }
    sleep 0.1
  done
  "$DOCKER" logs "$1" >&2
  fail "$1: no /$3/ within $2 s"
}
# Milliseconds from the container's start to its "atlas-gateway listening" line.
boot_ms() {
  local started listening
  started="$("$DOCKER" inspect -f '{{.State.StartedAt}}' "$1")"
  listening="$("$DOCKER" logs "$1" 2>&1 | grep -m1 '"msg":"atlas-gateway listening"')"
  node -e 'const [s, l] = process.argv.slice(1); console.log(JSON.parse(l).time - Date.parse(s))' "$started" "$listening"
}
# docker stop, timed; fails unless the exit code is 0 and "shut down" was logged.
stop_checked() {
  local t0 rc
  t0="$(ms_now)"
  "$DOCKER" stop "$1" >/dev/null
  rc="$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$1")"
  [ "$rc" = "0" ] || { "$DOCKER" logs "$1" 2>&1 | tail -20 >&2; fail "$1 exited $rc after docker stop"; }
  "$DOCKER" logs "$1" 2>&1 | grep -q '"msg":"shut down"' || fail "$1: no 'shut down' line"
  echo $(($(ms_now) - t0))
}

# 1. Build
if [ "${IMAGE_CHECK_SKIP_BUILD:-}" != "1" ]; then
  t0="$(ms_now)"
  if [ -n "${IMAGE_CHECK_CA_FILE:-}" ]; then
    [ -f "$IMAGE_CHECK_CA_FILE" ] || fail "IMAGE_CHECK_CA_FILE=$IMAGE_CHECK_CA_FILE is not a file"
    sed 's#^RUN npm ci#RUN --mount=type=secret,id=npm_ca,mode=0444 NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca npm ci#' Dockerfile >"$WORK/Dockerfile"
    grep -q 'id=npm_ca' "$WORK/Dockerfile" || fail "no 'RUN npm ci' line in the Dockerfile to give the CA to"
    step "build $IMAGE (npm ci trusts $IMAGE_CHECK_CA_FILE, a build secret)"
    DOCKER_BUILDKIT=1 "$DOCKER" build --network=host --secret "id=npm_ca,src=$IMAGE_CHECK_CA_FILE" \
      -f "$WORK/Dockerfile" -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "docker build"; }
  else
    step "build $IMAGE"
    "$DOCKER" build --network=host -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "docker build"; }
  fi
  step "built in $(( ($(ms_now) - t0) / 1000 )) s"
fi

# 2. The image's config
[ "$("$DOCKER" image inspect -f '{{.Config.User}}' "$IMAGE")" = "node" ] || fail "the image's USER is not node"
"$DOCKER" image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE" | grep -q '/healthz' || fail "no HEALTHCHECK on /healthz"
size="$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")"
base="$("$DOCKER" image inspect -f '{{.Size}}' "$(sed -n 's/^ARG NODE_IMAGE=//p' Dockerfile)" 2>/dev/null || echo 0)"
step "image: USER node, HEALTHCHECK on /healthz, $((size / 1000000)) MB ($(( (size - base) / 1000000 )) MB over the base)"

# 3. The sandbox upstream, as compose runs it (its token and login are compose's: SANDBOX_SEED=42)
compose_env() { grep -E "^\s+$1:" deploy/docker-compose.yml | head -1 | awk '{print $2}'; }
"$DOCKER" run -d --name "$NAME-sandbox" --network=host --no-healthcheck \
  -e SANDBOX_HOST=127.0.0.1 -e SANDBOX_PORT="$SANDBOX_PORT" -e SANDBOX_SEED=42 "$IMAGE" node dist/cli/sandbox.js >/dev/null
containers+=("$NAME-sandbox")
wait_log "$NAME-sandbox" 60 "127\\.0\\.0\\.1:$SANDBOX_PORT"
step "sandbox upstream on 127.0.0.1:$SANDBOX_PORT (node dist/cli/sandbox.js, as compose runs it)"

# 4. The gateway as the Deployment runs it
mkdir -p "$WORK/consumers" "$WORK/unmounted-volume"
cp deploy/consumers.yaml "$WORK/consumers/consumers.yaml"
KEY="$(grep -oE 'demo key: [0-9a-f]{40}' deploy/consumers.yaml | awk '{print $3}')"
[ -n "$KEY" ] || fail "no demo key in deploy/consumers.yaml"
"$DOCKER" image inspect -f '{{json .Config.Volumes}}' "$IMAGE" >"$WORK/image-volumes.json"
# One docker run argument a line, from the Deployment's first container.
node --input-type=module - "$DEPLOYMENT" "$WORK" "$WORK/image-volumes.json" >"$WORK/run-args" 2>"$WORK/run-summary" <<'EOF' || { cat "$WORK/run-summary" >&2; fail "cannot turn $DEPLOYMENT into docker run arguments"; }
import { chmodSync, mkdirSync, readFileSync } from 'node:fs'
import { parseAllDocuments } from 'yaml'
const [file, work, volumesFile] = process.argv.slice(2)
const deployment = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS()).find((d) => d?.kind === 'Deployment')
const pod = deployment.spec.template.spec
const c = pod.containers[0]
const args = []
const out = (...a) => args.push(...a)
const sc = { ...pod.securityContext, ...c.securityContext }
if (sc.runAsUser !== undefined) out('--user', `${sc.runAsUser}:${sc.runAsGroup ?? sc.runAsUser}`)
if (sc.readOnlyRootFilesystem === true) out('--read-only')
if (sc.allowPrivilegeEscalation === false) out('--security-opt', 'no-new-privileges')
for (const cap of sc.capabilities?.drop ?? []) out('--cap-drop', cap)
const mib = (q) => { const m = /^(\d+)(Mi|Gi)$/.exec(String(q)); if (!m) throw new Error(`memory ${q}`); return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1) }
if (c.resources?.limits?.memory) out('--memory', `${mib(c.resources.limits.memory)}m`)
if (c.resources?.limits?.cpu) { const cpu = String(c.resources.limits.cpu); out('--cpus', cpu.endsWith('m') ? String(Number(cpu.slice(0, -1)) / 1000) : cpu) }
out('--stop-timeout', String(pod.terminationGracePeriodSeconds ?? 30))
const mounted = new Set()
for (const m of c.volumeMounts ?? []) {
  const v = (pod.volumes ?? []).find((x) => x.name === m.name)
  mounted.add(m.mountPath)
  // An emptyDir is a fresh world-writable directory of the node (a tmpfs at a path that is also an image
  // VOLUME comes out root-owned 0755 in Docker 20.10, which the kubelet would never do). sizeLimit is
  // enforced by eviction, not by the mount: not mimicked.
  if (v?.emptyDir) {
    const dir = `${work}/emptydir-${m.name}`
    mkdirSync(dir)
    chmodSync(dir, 0o1777)
    out('--mount', `type=bind,src=${dir},dst=${m.mountPath}`)
  }
  else if (v?.configMap) out('--mount', `type=bind,src=${work}/consumers,dst=${m.mountPath},readonly`)
  else throw new Error(`volume ${m.name}: only emptyDir and configMap are mimicked`)
}
// Kubernetes mounts only the pod's volumes; an image VOLUME outside them stays on the root (CRI-O's default).
for (const path of Object.keys(JSON.parse(readFileSync(volumesFile, 'utf8')) ?? {})) {
  if (!mounted.has(path)) out('--mount', `type=bind,src=${work}/unmounted-volume,dst=${path},readonly`)
}
for (const e of c.env ?? []) if (e.value !== undefined) out('-e', `${e.name}=${e.value}`)
console.log(args.join('\n'))
console.error(args.filter((a, i) => a !== '-e' && args[i - 1] !== '-e').join(' '))
EOF
mapfile -t run_args <"$WORK/run-args"
secret_env=(-e "ATLAS_TOKEN=$(compose_env ATLAS_TOKEN)" -e "ATLAS_USERNAME=$(compose_env ATLAS_USERNAME)"
  -e "ATLAS_PASSWORD=$(compose_env ATLAS_PASSWORD)" -e "METRICS_TOKEN=image-check-metrics")
[ -n "${IMAGE_CHECK_REDIS_URL:-}" ] && secret_env+=(-e "REDIS_URL=$IMAGE_CHECK_REDIS_URL" -e "REDIS_KEY_PREFIX=agw-image-check-$$:")
GW="$NAME-gateway"
"$DOCKER" run -d --name "$GW" --network=host "${run_args[@]}" "${secret_env[@]}" \
  -e PORT="$PORT" -e ATLAS_BASE_URL="http://127.0.0.1:$SANDBOX_PORT/api/" "$IMAGE" >/dev/null
containers+=("$GW")
step "gateway as $(basename "$DEPLOYMENT") runs it ($( [ -n "${IMAGE_CHECK_REDIS_URL:-}" ] && echo "with REDIS_URL" || echo "without REDIS_URL")): $(cat "$WORK/run-summary")"
wait_log "$GW" 90 '"msg":"atlas-gateway listening"'
step "listening $(boot_ms "$GW") ms after the container started"
uid="$("$DOCKER" exec "$GW" sh -c 'grep ^Uid /proc/1/status' | awk '{print $2}')"
[ "$uid" = "1000" ] || fail "PID 1 runs as uid $uid"
"$DOCKER" exec "$GW" sh -c 'tr "\0" " " </proc/1/cmdline' | grep -q '^node dist/server.js' || fail "PID 1 is not node dist/server.js"
step "PID 1 is node dist/server.js as uid 1000"
for probe in readyz healthz; do
  status="$(http "http://127.0.0.1:$PORT/$probe")"
  [ "$status" = "200" ] || { cat "$WORK/body" >&2; fail "/$probe answered $status"; }
done
step "/readyz 200, /healthz 200"
options="$("$DOCKER" exec "$GW" sh -c 'tr "\0" "\n" </proc/1/environ' | sed -n 's/^NODE_OPTIONS=//p')"
old="$(grep -oE 'max-old-space-size=[0-9]+' <<<"$options" | cut -d= -f2)"
semi="$(grep -oE 'max-semi-space-size=[0-9]+' <<<"$options" | cut -d= -f2)"
[ -n "$old" ] && [ -n "$semi" ] || fail "PID 1's NODE_OPTIONS ($options) lacks the heap flags"
limit="$("$DOCKER" exec "$GW" node -e 'console.log(require("v8").getHeapStatistics().heap_size_limit / 1048576)')"
[ "$limit" = "$((old + 3 * semi))" ] || fail "heap_size_limit $limit MiB under NODE_OPTIONS=$options, expected $old + 3 × $semi"
step "NODE_OPTIONS=$options: heap_size_limit $limit MiB (old $old + 3 × semi $semi)"
status="$(http -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/objects/$OBJECT")"
[ "$status" = "200" ] && grep -q "\"id\":\"$OBJECT\"" "$WORK/body" || { cat "$WORK/body" >&2; fail "v1 object read answered $status"; }
step "GET /v1/objects/$OBJECT with the demo key: 200 ($(wc -c <"$WORK/body") bytes)"
status="$(http -X PUT -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/custom-lists/mookodi/objects/$OBJECT")"
case "$status" in 200|201) ;; *) cat "$WORK/body" >&2; fail "audited write answered $status" ;; esac
if [ -z "${IMAGE_CHECK_REDIS_URL:-}" ]; then
  lines="$("$DOCKER" exec "$GW" sh -c 'cat "$AUDIT_FILE" 2>/dev/null | wc -l')"
  [ "$lines" -ge 1 ] || fail "the write left no line in AUDIT_FILE"
  step "PUT /v1/custom-lists/mookodi/objects/$OBJECT: $status, audited in AUDIT_FILE ($lines line)"
else
  step "PUT /v1/custom-lists/mookodi/objects/$OBJECT: $status"
fi
status="$(http -H "Authorization: Bearer image-check-metrics" "http://127.0.0.1:$PORT/metrics")"
[ "$status" = "200" ] && grep -q '^gateway_requests_total{' "$WORK/body" || fail "/metrics answered $status"
[ "$(http "http://127.0.0.1:$PORT/metrics")" = "401" ] || fail "/metrics without the token was not refused"
step "/metrics 200 with METRICS_TOKEN, 401 without"
"$DOCKER" exec "$GW" node -e "process.kill(1, 'SIGHUP')"
wait_log "$GW" 10 'SIGHUP: consumers file reloaded'
step "SIGHUP through node: consumers file reloaded"
health=""
for _ in $(seq 1 90); do
  health="$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$GW")"
  [ "$health" = "healthy" ] && break
  sleep 1
done
[ "$health" = "healthy" ] || { "$DOCKER" inspect -f '{{json .State.Health}}' "$GW" >&2; fail "HEALTHCHECK status $health after 90 s"; }
step "HEALTHCHECK: healthy ($("$DOCKER" inspect -f '{{range .State.Health.Log}}{{.ExitCode}} {{end}}' "$GW")exit codes so far)"
step "memory: $("$DOCKER" stats --no-stream --format '{{.MemUsage}}' "$GW")"
stop_timeout="$(grep -A1 -- '--stop-timeout' "$WORK/run-args" | tail -1)"
( sleep 1; http "http://127.0.0.1:$PORT/readyz" >"$WORK/draining-status"; grep -o '"state":"[a-z]*"' "$WORK/body" >"$WORK/draining-state" || true ) &
drain_probe=$!
took="$(stop_checked "$GW")"
wait "$drain_probe" || true
[ "$(cat "$WORK/draining-status")" = "503" ] || fail "/readyz answered $(cat "$WORK/draining-status") 1 s into the drain"
[ "$took" -lt $((stop_timeout * 1000)) ] || fail "docker stop took $took ms, not within the $stop_timeout s stop timeout"
step "docker stop: /readyz 503 ($(cat "$WORK/draining-state")) during the drain, exit 0 after $took ms (stop timeout ${stop_timeout} s)"
if "$DOCKER" logs "$GW" 2>&1 | grep -E '"level":(50|60)|EROFS|EACCES' >"$WORK/errors"; then
  cut -c1-400 "$WORK/errors" >&2
  fail "errors logged (above): a path the gateway writes is not writable under this Deployment"
fi
step "no error logged (nothing written to a read-only path)"
if [ -n "${IMAGE_CHECK_REDIS_URL:-}" ] && command -v redis-cli >/dev/null; then
  redis-cli -u "$IMAGE_CHECK_REDIS_URL" --scan --pattern "agw-image-check-$$:*" | xargs -r redis-cli -u "$IMAGE_CHECK_REDIS_URL" del >/dev/null
fi

# 5. The image's defaults: embedded sandbox, demo key in the log
DF="$NAME-defaults"
"$DOCKER" run -d --name "$DF" --network=host -e PORT="$PORT" "$IMAGE" >/dev/null
containers+=("$DF")
wait_log "$DF" 90 '"msg":"atlas-gateway listening"'
demo="$("$DOCKER" logs "$DF" 2>&1 | grep -oE 'demo consumer key: [0-9a-f]{40}' | head -1 | awk '{print $4}')"
[ -n "$demo" ] || fail "defaults: no demo consumer key logged"
status="$(http -H "Authorization: Bearer $demo" "http://127.0.0.1:$PORT/v1/objects/$OBJECT")"
[ "$status" = "200" ] || { cat "$WORK/body" >&2; fail "defaults: v1 read answered $status"; }
took="$(stop_checked "$DF")"
step "defaults (embedded sandbox): listening $(boot_ms "$DF") ms after start, v1 read 200 with the logged demo key, exit 0 after $took ms"

step "ok"
