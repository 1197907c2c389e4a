#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one: installs what is missing (toolchain,
# the real `ckb` node: ~25 min the first time, cached after), checks formatting and lints, builds,
# then runs every test. Tests load real BPF programs, so this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "bootstrap"
./scripts/bootstrap.sh --with-test-tools
step "real CKB node binary"
./scripts/ckb-node.sh install

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --release -- -D warnings

step "licences, banned crates and sources (cargo deny, deny.toml)"
# Not `advisories`: its database is a git repository that cargo-deny clones at each run, and these
# machines and CI reach the package registries only, so that check would fail at the fetch.
cargo deny check --hide-inclusion-graph licenses bans sources

step "compose environment: Dockerfile, docker-compose.yml, scripts (no Docker engine needed)"
./scripts/lint-docker.sh

step "build"
cargo build --release

step "tests (one at a time: BPF programs and probes are machine-wide state)"
cargo test --release -- --test-threads=1
