#!/usr/bin/env bash
# Checks the prerequisites of ckb-probe and of its compose environment (spec 6.3), printing
# expected vs actual for each; exit 0 when all are met.
#
# Usage: scripts/env-check.sh [--docker] [--data DIR]
#   --docker    also require Docker >= 20.10 and Compose >= 2.0 (to run docker-compose.yml);
#               without it they are checked when a docker client is installed, and skipped otherwise
#               (on a host without Docker, or inside the compose environment's container)
#   --data DIR  where the node's data would go, for the free-disk check (default: current directory)
# Runs on a Linux host and inside the ckb-probe container alike.
set -euo pipefail
CHECK_NAME=env-check
# shellcheck source=scripts/check-lib.sh
. "$(dirname "$0")/check-lib.sh"

want_docker=0
data=.
while [ $# -gt 0 ]; do
  case "$1" in
    --docker) want_docker=1; shift ;;
    --data) data=${2:?--data DIR}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "env-check: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

# version_ge A B: A >= B for dotted versions
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

echo "ckb-probe environment check ($(uname -n), $(date -u +%Y-%m-%dT%H:%M:%SZ))"

kernel=$(uname -r)
k=${kernel%%-*}
ok=1; version_ge "$k" 5.8 && ok=0
expect "Linux kernel" ">= 5.8" "$kernel" "$ok"

ok=1; [ -r /sys/kernel/btf/vmlinux ] && ok=0
expect "kernel BTF" "/sys/kernel/btf/vmlinux" "$([ "$ok" = 0 ] && echo present || echo missing)" "$ok"

ok=1; [ "$(id -u)" = 0 ] && ok=0
expect "privileges" "root" "uid $(id -u)" "$ok"

ok=1; [ -d /sys/fs/bpf ] && ok=0
expect "BPF filesystem" "/sys/fs/bpf" "$([ "$ok" = 0 ] && echo present || echo missing)" "$ok"

# The network layer's tracepoints need tracefs (uprobes and raw tracepoints do not).
ok=1; [ -e /sys/kernel/tracing/events ] || [ -e /sys/kernel/debug/tracing/events ] && ok=0
expect "tracefs (network layer)" "mounted" "$([ "$ok" = 0 ] && echo mounted || echo 'not mounted')" "$ok"

mem_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
expect_ge "free memory" 4 "$(awk -v k="$mem_kb" 'BEGIN { printf "%.1f", k / 1048576 }')" GiB

disk_kb=$(df -Pk "$data" | awk 'NR == 2 {print $4}')
expect_ge "free disk ($data)" 20 "$(awk -v k="$disk_kb" 'BEGIN { printf "%.1f", k / 1048576 }')" GiB

# ckb-probe's own, deeper check: BPF program and map types, uprobes, memlock, sysctls.
probe=$(find_bin CKB_PROBE_BIN ckb-probe)
rc=0
"$probe" check >/tmp/env-check.$$ 2>&1 || rc=$?
expect_eq "ckb-probe check (exit status)" 0 "$rc"
if [ "$rc" != 0 ]; then sed 's/^/      /' /tmp/env-check.$$; fi
rm -f /tmp/env-check.$$

# Set by the project's Dockerfile (/.dockerenv is no sign: some VMs boot from a Docker image).
in_container=${CKB_PROBE_CONTAINER:-0}
dv="" cv=""
if command -v docker >/dev/null 2>&1; then
  dv=$(docker version --format '{{.Server.Version}}' 2>/dev/null || true)
  cv=$(docker compose version --short 2>/dev/null || true)
  cv=${cv#v}
fi
if [ "$want_docker" = 1 ]; then
  ok=1; [ -n "$dv" ] && version_ge "$dv" 20.10 && ok=0
  expect "Docker engine" ">= 20.10" "${dv:-$(command -v docker >/dev/null && echo 'client only, no engine' || echo 'no docker')}" "$ok"
  ok=1; [ -n "$cv" ] && version_ge "$cv" 2.0 && ok=0
  expect "Docker Compose" ">= 2.0" "${cv:-no compose plugin}" "$ok"
elif [ "$in_container" = 1 ]; then
  echo "  --   Docker, Compose                    not checked: running inside the ckb-probe container"
else
  # Informational: ckb-probe itself runs on the host without Docker; --docker makes these required.
  echo "  --   Docker engine, Compose             not required without --docker; here: engine ${dv:-none}, compose ${cv:-none}"
fi

finish
