#!/usr/bin/env bash
# The live demo: ckb-probe on its built-in target, a CKB-shaped RocksDB workload
# (ckb-probe-testbed: an OptimisticTransactionDB with CKB's 19 column families, statically
# linked like CKB). It shows `check`, `symbols`, the live RocksDB table, a genuine latency storm
# caught by anomaly detection, the slow-operation log, the histograms, all three layers at
# once (RocksDB, system calls by thread role, network) and the JSON output.
# With --ckb it traces a real CKB dev-chain node instead (built from crates.io if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

WARMUP="${DEMO_WARMUP:-20}"      # seconds of baseline learning before alerts may fire
STORM_AFTER="${DEMO_STORM_AFTER:-30}"
STORM_SECS="${DEMO_STORM_SECS:-15}"
LIVE_SECS="${DEMO_LIVE_SECS:-55}"
use_ckb=0
[ "${1:-}" = "--ckb" ] && use_ckb=1

banner() { printf '\n\033[1m━━ %s\033[0m\n' "$*"; }

./scripts/bootstrap.sh >/dev/null
banner "Building ckb-probe (release; the eBPF programs are embedded in the binary)"
cargo build --release --quiet
probe=target/release/ckb-probe

work=$(mktemp -d /tmp/ckb-probe-demo.XXXX)
target_pid=""
cleanup() {
  if [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null; then
    # Let it finish writing before its database is removed.
    wait "$target_pid" 2>/dev/null || true
  fi
  if [ "$use_ckb" = 1 ]; then ./scripts/ckb-node.sh stop "$work/node" >/dev/null 2>&1 || true; fi
  rm -rf "$work" || true
}
trap cleanup EXIT INT TERM

banner "1. ckb-probe check: can this machine trace?"
"$probe" check || true

if [ "$use_ckb" = 1 ]; then
  ./scripts/ckb-node.sh install
  eval "$(./scripts/ckb-node.sh start "$work/node")"
  target_pid="$CKB_PID"
  banner "2. ckb-probe symbols --pid $target_pid (the real CKB node)"
  "$probe" symbols --pid "$target_pid" | head -40
  banner "3. Live RocksDB table of the CKB node (${LIVE_SECS}s)"
  "$probe" rocksdb --pid "$target_pid" --by-cf --duration "$LIVE_SECS" --warmup "$WARMUP"
  banner "4. Slow operations above 100 µs (10 s)"
  "$probe" rocksdb --pid "$target_pid" --slow --threshold 100 --duration 10
  exit 0
fi

bed=target/release/ckb-probe-testbed
banner "2. ckb-probe symbols: the built-in target (RocksDB linked statically, like CKB)"
"$probe" symbols "$bed" | head -45

"$bed" --threads 2 --rate 3000 --duration $((LIVE_SECS + 60)) \
  --storm-after "$STORM_AFTER" --storm-secs "$STORM_SECS" \
  --start-file "$work/start" --output "$work/truth.json" --db "$work/db" >"$work/bed.out" &
target_pid=$!
for _ in $(seq 100); do grep -q READY "$work/bed.out" 2>/dev/null && break; sleep 0.1; done
touch "$work/start"

banner "3. Live RocksDB table (${LIVE_SECS}s; baseline ${WARMUP}s; a compaction storm starts at ${STORM_AFTER}s)"
"$probe" rocksdb --pid "$target_pid" --duration "$LIVE_SECS" --warmup "$WARMUP"

banner "4. Per column family (CKB's columns), 3 s"
"$probe" rocksdb --pid "$target_pid" --by-cf --duration 3 --interval 3 | tail -40

banner "5. Slow operations above 100 µs, 5 s"
"$probe" rocksdb --pid "$target_pid" --slow --threshold 100 --duration 5 --interval 5

banner "6. Latency histograms, 5 s"
"$probe" rocksdb --pid "$target_pid" --histogram --duration 5 --interval 5

banner "7. All three layers in one process (RocksDB + syscalls by thread role + network), 5 s"
"$probe" rocksdb --pid "$target_pid" --with syscall,net --duration 5 --interval 5 | tail -70

banner "8. JSON (NDJSON, one object per interval), first interval piped through jq"
"$probe" rocksdb --pid "$target_pid" --json --count 1 | head -1 | jq '{timestamp, pid, operations: (.operations | map_values({qps, avg_us, p50_us, p99_us, bytes_per_sec}))}'

printf '\nDemo done. Everything shown came from the probes; the workload printed its own ground truth to %s.\n' "$work/truth.json"
