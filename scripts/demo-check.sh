#!/usr/bin/env bash
# `ckb-probe check` and `ckb-probe symbols` on the node, with expected vs actual: the machine can
# trace, the node's binary links RocksDB statically with the C functions ckb-probe traces, and
# it is recognised as CKB. Exit 0 when all is as expected.
#
# Usage: scripts/demo-check.sh [--pid PID | --testbed]
#   --pid PID   the node to inspect (default: the one process running `ckb ... run`)
#   --testbed   inspect the project's CKB-shaped RocksDB workload instead of a CKB node (started
#               and stopped here); it is not CKB, so no CKB version is expected in it
set -euo pipefail
CHECK_NAME=demo-check
# shellcheck source=scripts/check-lib.sh
. "$(dirname "$0")/check-lib.sh"

pid="" testbed=0
while [ $# -gt 0 ]; do
  case "$1" in
    --pid) pid=${2:?--pid PID}; shift 2 ;;
    --testbed) testbed=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo-check: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
probe=$(find_bin CKB_PROBE_BIN ckb-probe)
trap stop_testbed EXIT
if [ "$testbed" = 1 ]; then
  start_testbed --threads 1 --rate 100 --duration 60
  pid=$TESTBED_PID
fi
[ -n "$pid" ] || pid=$(find_ckb_pid)
if [ -z "$pid" ]; then
  echo "demo-check: no running CKB node (no process \`ckb\` with \`run\`); start one, or pass --pid PID or --testbed" >&2
  exit 2
fi

echo "== ckb-probe check --pid $pid"
rc=0
"$probe" check --pid "$pid" || rc=$?
echo
echo "== ckb-probe symbols --pid $pid"
"$probe" symbols --pid "$pid" | head -30
sym=$("$probe" symbols --pid "$pid" --json)
echo
echo "== expected vs actual"
expect_eq "check --pid: exit status" 0 "$rc"
expect_eq "RocksDB linkage" static "$(jq -r '.rocksdb_linkage' <<<"$sym")"
traced=$(jq '[.tier1[] | select(.present and .traced)] | length' <<<"$sym")
# The five operations' hot functions as CKB links them (and the testbed too).
expect_ge "tier-1 functions traceable" 5 "$traced"
for f in rocksdb_get_pinned_cf rocksdb_transaction_put_cf rocksdb_transaction_commit rocksdb_iter_seek; do
  expect_eq "$f" traceable "$(jq -r --arg f "$f" '[.tier1[] | select(.name == $f and .present and .traced)] | if length > 0 then "traceable" else "missing" end' <<<"$sym")"
done
version=$(jq -r '.ckb_version // "none"' <<<"$sym")
if [ "$testbed" = 1 ]; then
  expect_eq "CKB version in the binary" none "$version"
else
  ok=1; [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] && ok=0
  expect "CKB version in the binary" "x.y.z" "$version" "$ok"
fi
finish
