#!/usr/bin/env bash
# Stress: real RocksDB load is injected (the project's CKB-shaped workload, RocksDB linked
# statically like CKB, run in this container or on this host: steady traffic, then a genuine
# storm of synchronous WAL writes, 256 KiB-1 MiB values and manual compactions), while ckb-probe
# watches it with its slow-operation log on. Expected: the anomaly alert fires within 15 s of the
# storm's start (spec F-7) and slow operations are logged. Exit 0 when all is as expected.
#
# Usage: scripts/demo-stress.sh [--warmup SECS] [--rate N]
#   --warmup SECS  baseline learning before the storm may be judged (default 20; the storm
#                  starts 10 s after it)
#   --rate N       steady load, iterations per second (default 1000, about 26 RocksDB calls each)
set -euo pipefail
CHECK_NAME=demo-stress
# shellcheck source=scripts/check-lib.sh
. "$(dirname "$0")/check-lib.sh"

warmup=20 rate=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --warmup) warmup=${2:?--warmup SECS}; shift 2 ;;
    --rate) rate=${2:?--rate N}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo-stress: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
{ [[ "$warmup" =~ ^[0-9]+$ ]] && [[ "$rate" =~ ^[0-9]+$ ]]; } || { echo "demo-stress: --warmup and --rate take whole numbers" >&2; exit 2; }
storm_after=$((warmup + 10)) storm_secs=15
total=$((storm_after + storm_secs + 15))
probe=$(find_bin CKB_PROBE_BIN ckb-probe)
work=$(mktemp -d /tmp/ckb-probe-stress.XXXX)
probe_pid=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
  if [ -n "$probe_pid" ]; then kill -TERM "$probe_pid" 2>/dev/null || true; wait "$probe_pid" 2>/dev/null || true; fi
  stop_testbed
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_testbed --threads 2 --rate "$rate" --duration "$total" --storm-after "$storm_after" --storm-secs "$storm_secs"
echo "== load: pid $TESTBED_PID, $rate iterations/s; storm ${storm_secs} s from ${storm_after} s; ckb-probe baseline ${warmup} s"
"$probe" rocksdb --pid "$TESTBED_PID" --slow --threshold 1000 --json --warmup "$warmup" --duration $((total + 30)) \
  >"$work/run.ndjson" 2>"$work/err" &
probe_pid=$!
for _ in $(seq 600); do
  grep -q 'ckb-probe: tracing ' "$work/err" 2>/dev/null && break
  kill -0 "$probe_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q 'ckb-probe: tracing ' "$work/err" || { cat "$work/err" >&2; echo "demo-stress: ckb-probe did not attach" >&2; exit 2; }
go_ms=$(testbed_go)
storm_ms=$((go_ms + storm_after * 1000))
echo "== storm at $(date -u -d "@$((storm_ms / 1000))" +%H:%M:%S) UTC; waiting for the workload to end (${total} s)"
rc=0
wait "$probe_pid" || rc=$?
probe_pid=""

# The first report showing an anomaly that began at the storm or later (reports and anomaly
# times are stamped to the second: one second of slack).
epoch() { date -u -d "$1" +%s; }
storm_s=$((storm_ms / 1000))
first=""
while IFS= read -r line; do
  starts=$(jq -r '.anomalies[]?.time' <<<"$line")
  for a in $starts; do
    if [ "$(epoch "$a")" -ge $((storm_s - 1)) ]; then first=$line; break; fi
  done
  if [ -n "$first" ]; then break; fi
done < <(jq -c 'select(.type == "interval")' "$work/run.ndjson")

echo
if [ -n "$first" ]; then
  alert_s=$(epoch "$(jq -r '.timestamp' <<<"$first")")
  echo "== the first report with the alert (as the live table showed it)"
  printf '%s\n' "$first" >"$work/alert.ndjson"
  "$probe" replay "$work/alert.ndjson" 2>/dev/null | sed -n '/ANOMALY DETECTED/,/Run `/p' || true
  delay=$((alert_s - storm_ms / 1000))
else
  delay=none
fi
slow=$(jq -s '[.[] | select(.type == "interval") | .slow_ops // [] | .[]] | length' "$work/run.ndjson")
slow_storm=$(jq -s --argjson a "$storm_ms" --argjson b $((storm_ms + storm_secs * 1000)) \
  '[.[] | select(.type == "interval") | .slow_ops // [] | .[] | select(.time_ms >= $a and .time_ms < $b + 5000)] | length' "$work/run.ndjson")
echo
echo "== expected vs actual"
expect_eq "ckb-probe exit status" 0 "$rc"
[ "$rc" = 0 ] || sed 's/^/      /' "$work/err"
expect "alert fired" "yes" "$([ -n "$first" ] && echo yes || echo no)" "$([ -n "$first" ] && echo 0 || echo 1)"
expect_le "alert delay after storm start (F-7)" 15 "$delay" s
expect_ge "slow operations (>= 1 ms) logged in the storm" 1 "$slow_storm"
echo "  slow operations logged in the whole run: $slow"
finish
