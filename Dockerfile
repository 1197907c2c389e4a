# syntax=docker/dockerfile:1
# ckb-probe, built from source with the project's own bootstrap (scripts/bootstrap.sh: Debian's
# rustc-web with its prebuilt BPF `core`, bpf-linker against LLVM 22), then a runtime image that
# carries the binaries and the acceptance scripts only. Used by docker-compose.yml as the sidecar.

# ---- build stage: Debian bookworm, like the machines the project is developed and tested on.
FROM debian:bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Unpinned on purpose (DL3008): bookworm's point releases replace package versions, and a pinned
# version that left the archive would break the build; the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config git \
 && rm -rf /var/lib/apt/lists/*
# rustup's stable toolchain is the one the workspace declares (rust-version 1.95); the BPF side
# uses Debian's rustc-web, which bootstrap.sh installs.
ARG RUST_VERSION=1.95.0
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
# bootstrap.sh is the same script a developer runs on a host (idempotent); its tracefs mount
# fails inside `docker build` and is only a warning there.
RUN ./scripts/bootstrap.sh \
 && cargo build --release --locked --bin ckb-probe --bin ckb-probe-testbed

# ---- runtime stage: the binaries, the acceptance scripts and the few tools they call.
FROM debian:bookworm-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates curl jq procps iproute2 \
 && rm -rf /var/lib/apt/lists/*
# ckb-probe-testbed is the project's CKB-shaped RocksDB workload (RocksDB linked statically):
# demo-stress.sh runs it in this container to inject real RocksDB load.
COPY --from=build /src/target/release/ckb-probe /src/target/release/ckb-probe-testbed /usr/local/bin/
COPY scripts/check-lib.sh scripts/env-check.sh scripts/demo-check.sh scripts/demo-normal.sh scripts/demo-stress.sh /opt/ckb-probe/scripts/
ENV CKB_PROBE_BIN=/usr/local/bin/ckb-probe \
    CKB_PROBE_TESTBED_BIN=/usr/local/bin/ckb-probe-testbed \
    CKB_PROBE_CONTAINER=1
WORKDIR /opt/ckb-probe
EXPOSE 9190
# BPF needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE) and a privileged container.
ENTRYPOINT ["/usr/local/bin/ckb-probe"]
CMD ["export", "--listen", "0.0.0.0:9190"]
