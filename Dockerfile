# syntax=docker/dockerfile:1
# The hub as an image: `docker build -t herald-hub .`, then see docs/operations.md (or run
# docker-compose.yml). Two stages: the build packs the four published packages into tarballs; the
# runtime installs only those tarballs with their production dependencies, as a user would
# (packages/cli/src/install.e2e.test.ts installs them the same way), and runs as `node`.

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY . .
# `npm ci` builds every package to dist/ through the root `prepare` script (scripts/build.mjs).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund \
 && npm pack --pack-destination /pack \
      --workspace packages/core --workspace packages/client --workspace packages/hub --workspace packages/cli

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /pack/*.tgz ./
# Production dependencies only, no install scripts: nothing of the build stage (devDependencies,
# sources, tests) reaches this image. The data directory belongs to `node` before it becomes a
# volume, so a named volume mounted there starts out writable by the hub.
RUN echo '{"name":"herald-image","private":true}' > package.json \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund ./*.tgz \
 && npm cache clean --force \
 && mkdir -p /var/lib/herald \
 && chown node:node /var/lib/herald

# Listen on every interface of the container (the hub's default, 127.0.0.1, is unreachable from
# outside it); gRPC binds the same address. Beyond loopback the hub requires API tokens
# (HERALD_AUTH=auto): pass HERALD_ADMIN_TOKEN to create the first users (docs/security.md).
# Without a postgres:// HERALD_DATABASE_URL the log is the embedded store in the volume; it is one
# process's, so run one container per volume.
ENV HERALD_HTTP_HOST=0.0.0.0 \
    HERALD_DATABASE_URL=/var/lib/herald
VOLUME ["/var/lib/herald"]
USER node
EXPOSE 8080 50051

# /readyz is 200 only while the hub runs and ingest consumes (a standby hub answers 503). No curl
# in the slim image: node's fetch. Set the port with HERALD_HTTP_PORT (not --http-port) so the
# check finds it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.HERALD_HTTP_PORT||8080)+'/readyz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"]

# The hub is PID 1 here and handles SIGTERM itself: it finishes the batch in flight, saves the
# subscriptions' offsets and the checkpoint, and exits 0 (a second signal exits at once). Give
# `docker stop` time for that (`--time 30`; compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/node_modules/@herald/cli/dist/main.js"]
CMD ["hub"]
