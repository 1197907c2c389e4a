#!/usr/bin/env bash
# Normal operation: ckb-probe follows the node for a while (5 minutes by default), prints the
# live table's last report, writes a JSON snapshot, and checks expected vs actual: a report every
# second, every layer running, RocksDB reads and writes seen, no event lost, no anomaly alert.
# Exit 0 when all is as expected.
#
# Usage: scripts/demo-normal.sh [--pid PID | --testbed] [--duration SECS] [--out FILE]
#   --pid PID        the node (default: the one process running `ckb ... run`)
#   --testbed        follow the project's CKB-shaped RocksDB workload at a steady rate instead
#   --duration SECS  how long to follow it (default 300)
#   --out FILE       the JSON snapshot (default ./ckb-probe-normal.json): the last interval
#                    report and the run's summary, as ckb-probe's NDJSON writes them
set -euo pipefail
CHECK_NAME=demo-normal
# shellcheck source=scripts/check-lib.sh
. "$(dirname "$0")/check-lib.sh"

pid="" testbed=0 duration=300 out=./ckb-probe-normal.json
while [ $# -gt 0 ]; do
  case "$1" in
    --pid) pid=${2:?--pid PID}; shift 2 ;;
    --testbed) testbed=1; shift ;;
    --duration) duration=${2:?--duration SECS}; shift 2 ;;
    --out) out=${2:?--out FILE}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo-normal: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
{ [[ "$duration" =~ ^[0-9]+$ ]] && [ "$duration" -ge 5 ]; } || { echo "demo-normal: --duration must be >= 5 s" >&2; exit 2; }
probe=$(find_bin CKB_PROBE_BIN ckb-probe)
work=$(mktemp -d /tmp/ckb-probe-normal.XXXX)
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() { stop_testbed; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$testbed" = 1 ]; then
  start_testbed --threads 2 --rate 300 --duration $((duration + 30))
  pid=$TESTBED_PID
  testbed_go >/dev/null
fi
[ -n "$pid" ] || pid=$(find_ckb_pid)
if [ -z "$pid" ]; then
  echo "demo-normal: no running CKB node (no process \`ckb\` with \`run\`); start one, or pass --pid PID or --testbed" >&2
  exit 2
fi

# Alerts need a learnt baseline: half the run learns it, the other half is watched.
warmup=$((duration / 2))
echo "== ckb-probe rocksdb --with syscall,net --pid $pid, ${duration} s (baseline ${warmup} s), NDJSON"
rc=0
"$probe" rocksdb --pid "$pid" --with syscall,net --json --duration "$duration" --warmup "$warmup" \
  >"$work/run.ndjson" 2>"$work/err" || rc=$?
echo "== the last report, as the live table shows it"
tail -n 2 "$work/run.ndjson" | head -n 1 >"$work/last.ndjson"
"$probe" replay "$work/last.ndjson" 2>/dev/null | head -40 || true

# The snapshot: the last interval and the summary.
jq -s '{last_interval: .[-2], summary: .[-1]}' "$work/run.ndjson" >"$out"
echo
echo "== expected vs actual (snapshot: $out)"
expect_eq "ckb-probe exit status" 0 "$rc"
[ "$rc" = 0 ] || sed 's/^/      /' "$work/err"
bad=0
while IFS= read -r l; do jq -e 'type == "object"' >/dev/null 2>&1 <<<"$l" || bad=$((bad + 1)); done <"$work/run.ndjson"
expect_eq "NDJSON lines that do not parse" 0 "$bad"
intervals=$(jq -s '[.[] | select(.type == "interval")] | length' "$work/run.ndjson")
expect_ge "interval reports (1 s)" $((duration - 2)) "$intervals"
expect_eq "summary report, end" duration "$(jq -r 'select(.type == "summary") | .end' "$work/run.ndjson")"
expect_eq "layers" "rocksdb,syscall,net" "$(jq -r 'select(.type == "summary") | .layers | join(",")' "$work/run.ndjson")"
for op in GET PUT WRITE; do
  expect_ge "$op calls seen" 1 "$(jq -r --arg op "$op" 'select(.type == "summary") | .operations[$op].count // 0' "$work/run.ndjson")"
done
lost=$(jq -s '[.[] | select(.type == "interval") | (.lost_events // 0) + (.net.lost_events // 0)] | add // 0' "$work/run.ndjson")
expect_eq "events lost" 0 "$lost"
alerts=$(jq -s '[.[] | select(.type == "interval") | .anomalies[]?] | length' "$work/run.ndjson")
expect_eq "anomaly alerts in normal operation" 0 "$alerts"
node=$(jq -r 'select(.type == "summary") | .node' "$work/run.ndjson")
if [ "$testbed" = 1 ]; then
  expect_eq "node" "not CKB" "$([[ "$node" == *"(not CKB)"* ]] && echo "not CKB" || echo "$node")"
else
  expect_eq "node" "CKB vX.Y.Z" "$([[ "$node" =~ ^CKB\ v[0-9]+\.[0-9]+\.[0-9]+ ]] && echo "CKB vX.Y.Z" || echo "$node")"
fi
echo "  node: $node"
finish
