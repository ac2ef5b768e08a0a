# syntax=docker/dockerfile:1.7
# checkov:skip=CKV_DOCKER_2:distroless runtime has no shell or HTTP client to run a HEALTHCHECK, and Kubernetes ignores Docker HEALTHCHECKs; the pods use HTTP probes on /healthz and /readyz
# fdb-sink with the FoundationDB backend (`--features fdb`).
#
#   docker build -f deploy/docker/fdb-sink.Dockerfile \
#     --build-arg FDB_CLIENTS_SHA256=<sha256 of the .deb> -t fdb-sink:dev .
#
# The FoundationDB client library (libfdb_c) comes from the official
# foundationdb-clients Debian package of the pinned release, verified by
# sha256 before it is installed. The checksum has no default on purpose: take
# it from the release's published checksum (the `.sha256` file beside the
# .deb on the FoundationDB release page) or from `sha256sum` of a copy you
# trust, and record it in the release notes. A wrong or missing checksum fails
# the build. The client library must speak the cluster's protocol: keep
# FDB_VERSION on the same 7.3 patch line as the FoundationDBCluster's
# spec.version (deploy/k8s/base/app/foundationdb-cluster.yaml).
#
# Base images are pinned by tag; pin them by digest at release.

ARG FDB_VERSION=7.3.69

FROM rust:1.95-slim-bookworm AS build
ARG FDB_VERSION
ARG FDB_CLIENTS_SHA256
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libclang-dev \
    && rm -rf /var/lib/apt/lists/*
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN test -n "${FDB_CLIENTS_SHA256}" \
      || { echo "FDB_CLIENTS_SHA256 build-arg is required (sha256 of foundationdb-clients_${FDB_VERSION}-1_amd64.deb)" >&2; exit 1; } \
    && curl -fsSL -o /tmp/foundationdb-clients.deb \
       "https://github.com/apple/foundationdb/releases/download/${FDB_VERSION}/foundationdb-clients_${FDB_VERSION}-1_amd64.deb" \
    && echo "${FDB_CLIENTS_SHA256}  /tmp/foundationdb-clients.deb" | sha256sum -c - \
    && dpkg -i /tmp/foundationdb-clients.deb \
    && rm /tmp/foundationdb-clients.deb \
    && test -f /usr/lib/libfdb_c.so
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY file-event ./file-event
COPY monitor ./monitor
COPY fdb-sink ./fdb-sink
COPY tests ./tests
# fjall, patched (vendor/fjall/PATCHES.md), through [patch.crates-io].
COPY vendor ./vendor
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fdb-sink --features fdb \
    && install -D -m 0755 target/release/fdb-sink /out/fdb-sink

# "export" target: the daily logical export job (deploy/docker/export-audit.sh),
# which needs a shell, gzip and the gcloud CLI next to the fdb-sink binary.
#   docker build -f deploy/docker/fdb-sink.Dockerfile --target export ...
FROM gcr.io/google.com/cloudsdktool/google-cloud-cli:525.0.0-slim AS export
COPY --from=build /usr/lib/libfdb_c.so /usr/lib/libfdb_c.so
COPY --from=build /out/fdb-sink /usr/local/bin/fdb-sink
COPY --chmod=0755 deploy/docker/export-audit.sh /usr/local/bin/export-audit
ENV FDB_CLUSTER_FILE=/etc/foundationdb/fdb.cluster
USER 65532:65532
# A batch job: nothing to health-check; Kubernetes tracks the Job's exit status.
ENTRYPOINT ["/usr/local/bin/export-audit"]

# Default target: the service image.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG FDB_VERSION
LABEL org.opencontainers.image.title="fdb-sink" \
      org.opencontainers.image.description="Validates file events and writes idempotent audit records to FoundationDB" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.foundationdb.client-version="${FDB_VERSION}"
COPY --from=build /usr/lib/libfdb_c.so /usr/lib/libfdb_c.so
COPY --from=build /out/fdb-sink /usr/local/bin/fdb-sink
ENV FDB_CLUSTER_FILE=/etc/foundationdb/fdb.cluster
# Freed memory is returned to the system after 10 s instead of 1 s, so that
# continuous ingest reuses it rather than faulting in fresh pages (docs/sink.md).
ENV MIMALLOC_PURGE_DELAY=10000
USER 65532:65532
EXPOSE 8080 8081
# No HEALTHCHECK: no shell or HTTP client in the image, and Kubernetes ignores
# Docker HEALTHCHECKs; the pods probe /healthz and /readyz over HTTP instead.
ENTRYPOINT ["/usr/local/bin/fdb-sink"]
CMD ["serve", "--store", "fdb:/etc/foundationdb/fdb.cluster"]
