# atlas-gateway image: build with dev dependencies, run with production dependencies only.
# `scripts/install-check.sh` repeats the runtime stage's steps without Docker (CI has no Docker) and
# test/deploy/manifests.test.ts checks that this file, compose and the Kubernetes manifests agree on
# the port and the image name.
# Node 22 LTS. No `# syntax=` line: it makes BuildKit pull a frontend image, which fails offline.
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
# No secrets here: ATLAS_TOKEN, credentials and METRICS_TOKEN come from the environment at run time.
# HOST is set on purpose: the gateway's own default is loopback (127.0.0.1), unreachable from outside a
# container.
# The V8 heap limits: old space 192 MiB + CACHE_MAX_BYTES (L1 and its derived memo live in Buffers,
# outside the heap) + 128 MiB (young generation, code, sockets, compression) fits in 384 MiB, the
# Kubernetes memory limit; deploy/kubernetes/deployment.yaml sets the same values (checked by
# test/deploy/manifests.test.ts). Semi-spaces of 8 MiB (V8's default is 16) keep the young generation
# at 24 MiB under the allocation of a miss storm; `npm run bench` runs the gateway with these options.
# MALLOC_ARENA_MAX=2: glibc gives each thread (libuv's pool, V8's workers) malloc arenas of its own, and
# Buffers freed in one arena stay its RSS. The peak of a 50,000-id NDJSON stream (S5) was 283-324 MiB
# (mean 306) in five runs with two arenas and 298-348 MiB (mean 326) in four without: a small gain
# inside the noise of single runs. The bench sets it too.
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0 \
    MALLOC_ARENA_MAX=2 \
    NODE_OPTIONS="--max-old-space-size=192 --max-semi-space-size=8"
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Files stay root-owned and read-only to the process, so a read-only root filesystem works. Without
# REDIS_URL the audit and usage files need a writable place: a volume owned by node (mount your own
# there to keep them).
RUN mkdir /app/data && chown node:node /app/data
ENV AUDIT_FILE=/app/data/audit.jsonl \
    USAGE_FILE=/app/data/usage.json
VOLUME ["/app/data"]
USER node
EXPOSE 8080
# Liveness only (/healthz, never /readyz: a draining replica is alive). The slim image has no curl
# (and no kill); Node's fetch does the probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node is PID 1 and handles SIGTERM itself (src/server.ts: drain, then close); no npm wrapper, which
# would not forward the signal. Docker's default stop timeout (10 s) is shorter than SHUTDOWN_DRAIN_MS +
# SHUTDOWN_TIMEOUT_MS (5 s + 10 s): run with `docker run --stop-timeout 25` (compose: stop_grace_period).
# Reload the consumers file with `docker exec <c> node -e "process.kill(1, 'SIGHUP')"`.
CMD ["node", "dist/server.js"]
