# syntax=docker/dockerfile:1.7
# checkov:skip=CKV_DOCKER_2:distroless runtime has no shell or HTTP client to run a HEALTHCHECK, and Kubernetes ignores Docker HEALTHCHECKs; the pods use HTTP probes on /healthz and /readyz
# file-monitor: the per-pod workspace sidecar.
#
#   docker build -f deploy/docker/file-monitor.Dockerfile -t file-monitor:dev .
#
# Build context is the repository root. Base images are pinned by tag; pin them
# by digest at release (`docker buildx imagetools inspect <tag>` gives it) and
# record the digest here, e.g. `FROM rust:1.95-slim-bookworm@sha256:<digest>`.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Cargo manifests first so the dependency layer is cached across source edits.
COPY Cargo.toml Cargo.lock ./
COPY file-event ./file-event
COPY monitor ./monitor
COPY fdb-sink ./fdb-sink
COPY tests ./tests
# fjall, patched (vendor/fjall/PATCHES.md), through [patch.crates-io].
COPY vendor ./vendor
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p monitor \
    && install -D -m 0755 target/release/file-monitor /out/file-monitor

# distroless/cc: glibc + libgcc, no shell, no package manager. Debian 12, like
# the build stage, so the glibc the binary was linked against is present.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="file-monitor" \
      org.opencontainers.image.description="Watches /workspace and prints one file-event/1 JSON line per file event" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/file-monitor /usr/local/bin/file-monitor
# distroless "nonroot" is uid/gid 65532; numeric so Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 9090
# No HEALTHCHECK: the image has no shell or HTTP client to run one, and
# Kubernetes ignores Docker HEALTHCHECKs; the pod uses liveness/readiness
# probes on :9090/healthz and /readyz instead (see deploy/k8s/base).
ENTRYPOINT ["/usr/local/bin/file-monitor"]
CMD ["/workspace"]
