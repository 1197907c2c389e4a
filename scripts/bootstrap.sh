#!/usr/bin/env bash
# Installs everything ckb-probe's build, demo and tests need on a fresh Debian bookworm machine.
# Idempotent: a second run checks and returns in seconds.
# --with-test-tools: also the tools only scripts/test.sh uses (cargo-deny, about 4 min to build).
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
# 0.20.x builds on stable 1.95 (it needs 1.88).
CARGO_DENY_VERSION=0.20.2
test_tools=0
for arg in "$@"; do
  case "$arg" in
    --with-test-tools) test_tools=1 ;;
    *)
      echo "bootstrap: unknown argument '$arg' (only --with-test-tools)" >&2
      exit 2
      ;;
  esac
done
APT_PACKAGES=(
  # Debian's rustc-web ships a prebuilt `core` for bpfel-unknown-none: no nightly, no build-std.
  rustc-web cargo-web libstd-rust-web-dev-bpf rust-web-src llvm-22-dev
  # The testbed links Debian's RocksDB both statically and dynamically.
  librocksdb-dev libsnappy-dev liblz4-dev libzstd-dev libbz2-dev zlib1g-dev
  # Building the real `ckb` node from crates.io (bindgen, C++ RocksDB).
  clang libclang-dev
  # Leftover-probe checks, demo helpers.
  bpftool jq curl procps iproute2 binutils
  # Least-privilege and container tests: setcap, setpriv and unshare, systemd-analyze.
  libcap2-bin util-linux systemd
  # An independent second probe for cross-checking counts on the real node.
  bpftrace
  # The exporter's tests: a real Prometheus server, and promtool to check metrics and rules.
  prometheus
  # Validating the compose environment without a Docker engine (scripts/lint-docker.sh):
  # `docker-compose config` (1.29, reads the file without an engine), shellcheck, and a venv for
  # hadolint and check-jsonschema, which Debian does not package (they come from PyPI).
  docker-compose shellcheck python3-venv
  # A real terminal for the `overview` TUI's end-to-end tests (send-keys, capture-pane).
  tmux
)

log() { printf '[bootstrap] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: must run as root (it installs Debian packages and mounts tracefs); try: sudo $0" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a system Prometheus on all interfaces where systemd runs; the tests start
  # their own on loopback, so a service we just installed is stopped and disabled.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
else
  log "Debian packages present"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null || ! command -v cargo >/dev/null; then
  echo "bootstrap: rustup and cargo (stable >= 1.95) are needed and not found in PATH or ~/.cargo/bin;" \
    "install Rust with rustup first (this machine kind ships it)" >&2
  exit 1
fi
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "installing bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about 80 s)"
  # Without LLVM_PREFIX, llvm-sys finds /usr/bin/llvm-config, which is LLVM 14.
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --quiet --locked "bpf-linker@$BPF_LINKER_VERSION" \
    --no-default-features --features llvm-22
else
  log "bpf-linker $BPF_LINKER_VERSION present"
fi

if [ "$test_tools" = 1 ]; then
  if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
    log "installing cargo-deny $CARGO_DENY_VERSION (about 4 min)"
    cargo install --quiet --locked "cargo-deny@$CARGO_DENY_VERSION"
  else
    log "cargo-deny $CARGO_DENY_VERSION present"
  fi
fi

if ! rustup toolchain list | grep -q '^rust-web'; then
  log "linking Debian's rustc-web as rustup toolchain 'rust-web'"
  rustup toolchain link rust-web /usr
else
  log "rustup toolchain rust-web present"
fi

# Classic tracepoints (net layer) need tracefs; uprobes and raw tracepoints do not.
if [ ! -e /sys/kernel/tracing/events ]; then
  log "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs tracefs /sys/kernel/tracing || log "warning: could not mount tracefs; the net layer will be unavailable"
fi

log "ready"
