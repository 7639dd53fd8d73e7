# syntax=docker/dockerfile:1
# atlas-gateway image: build with dev dependencies, run with production dependencies only.
# `scripts/install-check.sh` repeats the runtime stage's steps without Docker (CI has no Docker) and
# test/deploy/manifests.test.ts checks that this file, compose and the Kubernetes manifests agree on
# the port and the image name.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
# No secrets here: ATLAS_TOKEN, credentials and METRICS_TOKEN come from the environment at run time.
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Files stay root-owned and read-only to the process, so a read-only root filesystem works.
USER node
EXPOSE 8080
# The slim image has no curl; Node 20's fetch does the probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node is PID 1 and handles SIGTERM itself (src/server.ts: graceful shutdown); no npm wrapper, which
# would not forward the signal.
CMD ["node", "dist/server.js"]
