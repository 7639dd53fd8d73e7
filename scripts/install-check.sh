#!/usr/bin/env bash
# Production install check: does what the Dockerfile's runtime stage does, without Docker.
#   1. npm run build (the build stage)
#   2. copy package.json, package-lock.json and dist/ to a temporary directory
#   3. npm ci --omit=dev there, and check that every package dist/ imports is a runtime dependency
#   4. boot `node dist/server.js` with embedded defaults, hit /healthz, v1 routes and /metrics
#   5. SIGTERM, expect exit code 0
#   6. boot the sandbox CLI as docker-compose.yml runs it and call it with compose's token
# Prints "install-check: ok" at the end and exits 0, or names the failed step and exits 1.
# Set INSTALL_CHECK_SKIP_BUILD=1 to reuse an existing dist/.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/atlas-gateway-install-check.XXXXXX")"
BOOT_TIMEOUT_S=30
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf 'install-check: %s\n' "$*"; }
fail() { printf 'install-check: FAILED: %s\n' "$*" >&2; exit 1; }

# Waits until $1 (a log file) has a line matching $2; fails after BOOT_TIMEOUT_S or if $3 (a pid) died.
wait_for_line() {
  local file="$1" pattern="$2" pid="$3"
  for _ in $(seq 1 $((BOOT_TIMEOUT_S * 10))); do
    grep -qE "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; fail "process exited before logging /$pattern/"; }
    sleep 0.1
  done
  cat "$file" >&2
  fail "no /$pattern/ within ${BOOT_TIMEOUT_S}s"
}

# GET with optional extra header; prints the status code, the body goes to $WORK/body.
http_get() {
  local url="$1" header="${2:-}"
  if [ -n "$header" ]; then
    curl -sS -o "$WORK/body" -w '%{http_code}' -H "$header" "$url"
  else
    curl -sS -o "$WORK/body" -w '%{http_code}' "$url"
  fi
}

cd "$ROOT"
if [ "${INSTALL_CHECK_SKIP_BUILD:-}" != "1" ]; then
  step "build"
  npm run build --silent || fail "npm run build"
fi
[ -f dist/server.js ] || fail "dist/server.js missing after the build"

step "copy package.json, package-lock.json and dist/ to $WORK/app"
mkdir -p "$WORK/app"
cp package.json package-lock.json "$WORK/app/"
cp -R dist "$WORK/app/dist"
cd "$WORK/app"

step "npm ci --omit=dev"
npm ci --omit=dev --no-audit --no-fund --prefer-offline --loglevel=error >"$WORK/npm.log" 2>&1 \
  || { cat "$WORK/npm.log" >&2; fail "npm ci --omit=dev"; }

step "every package imported by dist/ is a runtime dependency"
node --input-type=module - <<'EOF' || fail "dist/ imports packages that are not runtime dependencies"
import { readFileSync, readdirSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { join } from 'node:path'
const pkg = JSON.parse(readFileSync('package.json', 'utf8'))
const runtime = new Set(Object.keys(pkg.dependencies ?? {}))
const dev = new Set(Object.keys(pkg.devDependencies ?? {}))
const builtins = new Set(builtinModules)
const files = readdirSync('dist', { recursive: true }).map(String).filter((f) => f.endsWith('.js'))
const IMPORT = /(?:^|[\s;])(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm
const problems = []
for (const file of files) {
  const text = readFileSync(join('dist', file), 'utf8')
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3]
    if (spec === undefined || spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue
    const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]
    if (runtime.has(name)) continue
    problems.push(`${file} imports ${spec}: ${dev.has(name) ? 'a devDependency' : 'not in package.json'}`)
  }
}
for (const p of problems) console.error(`  ${p}`)
process.exit(problems.length === 0 ? 0 : 1)
EOF

step "boot node dist/server.js with embedded defaults"
# Embedded defaults: no upstream, Redis, consumers file or token from the caller's environment.
env -u ATLAS_BASE_URL -u ATLAS_TOKEN -u ATLAS_TOKEN_FILE -u ATLAS_USERNAME -u ATLAS_PASSWORD \
  -u REDIS_URL -u CONSUMERS_FILE -u METRICS_TOKEN \
  NODE_ENV=production PORT=0 HOST=127.0.0.1 LOG_LEVEL=info \
  node dist/server.js >"$WORK/gateway.log" 2>&1 &
gateway=$!
pids+=("$gateway")
wait_for_line "$WORK/gateway.log" '"msg":"atlas-gateway listening"' "$gateway"
address="$(grep -m1 '"msg":"atlas-gateway listening"' "$WORK/gateway.log" | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).address)')"
step "listening at $address"

status="$(http_get "$address/healthz")"
[ "$status" = "200" ] || fail "/healthz answered $status"
step "/healthz 200"

# The demo consumer's key is logged once at boot (consumers plugin); without it, the route must
# still exist (401, not 404).
key="$(grep -oE 'demo consumer key: [0-9a-f]{40}' "$WORK/gateway.log" | head -1 | awk '{print $4}' || true)"
if [ -n "$key" ]; then
  status="$(http_get "$address/v1/lists" "Authorization: Bearer $key")"
  [ "$status" = "200" ] || { cat "$WORK/body" >&2; fail "/v1/lists with the demo key answered $status"; }
  step "/v1/lists 200 with the demo consumer key"
  # A route that reaches the (embedded) upstream: undici and the lossless JSON path in production.
  status="$(http_get "$address/v1/lists/follow_up/objects" "Authorization: Bearer $key")"
  [ "$status" = "200" ] || { cat "$WORK/body" >&2; fail "/v1/lists/follow_up/objects answered $status"; }
  step "/v1/lists/follow_up/objects 200 through the upstream"
else
  status="$(http_get "$address/v1/lists")"
  case "$status" in
    200|401) step "/v1/lists $status (no demo key in the boot log)" ;;
    *) cat "$WORK/body" >&2; fail "/v1/lists answered $status" ;;
  esac
fi

status="$(http_get "$address/metrics")"
[ "$status" = "200" ] && grep -q '^gateway_requests_total{' "$WORK/body" || fail "/metrics answered $status without gateway_requests_total"
step "/metrics 200"

step "SIGTERM"
kill -TERM "$gateway"
rc=0
wait "$gateway" || rc=$?
[ "$rc" = "0" ] || { cat "$WORK/gateway.log" >&2; fail "exit code $rc after SIGTERM"; }
grep -q '"msg":"shut down"' "$WORK/gateway.log" || fail "no 'shut down' log line"
step "exit code 0"

if [ -f dist/cli/sandbox.js ]; then
  step "boot the sandbox CLI as docker-compose.yml does"
  sandbox_port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})')"
  SANDBOX_HOST=127.0.0.1 SANDBOX_PORT="$sandbox_port" SANDBOX_SEED=42 node dist/cli/sandbox.js >"$WORK/sandbox.log" 2>&1 &
  sandbox=$!
  pids+=("$sandbox")
  wait_for_line "$WORK/sandbox.log" "127\\.0\\.0\\.1:$sandbox_port" "$sandbox"
  compose_token="$(grep -E '^\s+ATLAS_TOKEN:' "$ROOT/deploy/docker-compose.yml" | awk '{print $2}')"
  status="$(http_get "http://127.0.0.1:$sandbox_port/api/objectlist/?objectlistid=2" "Authorization: Token $compose_token")"
  [ "$status" = "200" ] || { cat "$WORK/body" >&2; fail "the sandbox refused docker-compose.yml's ATLAS_TOKEN ($status)"; }
  step "sandbox accepts docker-compose.yml's token"
  kill -TERM "$sandbox"
  wait "$sandbox" || true
else
  fail "dist/cli/sandbox.js missing (docker-compose.yml runs it)"
fi

step "ok"
