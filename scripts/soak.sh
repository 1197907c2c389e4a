#!/usr/bin/env bash
# The stability (soak) run: ckb-probe with all layers (`rocksdb --with syscall,net`) against a
# target for minutes to days, sampled every 10 s, then the report (DIR/REPORT.md + SVG charts)
# generated from what the run wrote: ckb-probe's own NDJSON and the /proc samples.
#
# Usage: scripts/soak.sh --duration SECS --out DIR [--target testbed|ckb|both] [options]
#   --duration SECS     length of the run (>= 60)
#   --out DIR           where everything goes (created; must not exist or be empty)
#   --target T          testbed (default): the CKB-shaped RocksDB workload at a steady rate with
#                       periodic storms; ckb: a real CKB dev-chain node mining (scripts/ckb-node.sh);
#                       both: the two at once
#   --rate N            testbed iterations per second (default 400: ~10,000 RocksDB calls/s, P-3's load)
#   --window SECS       length of the with-probe and without-probe windows on the control target
#                       (default 60; shorter for runs under 8 minutes)
#   --storm-every SECS  testbed storm period (default 600); --storm-secs SECS storm length (default 15)
#   --warmup SECS       ckb-probe's baseline learning before alerts (default: duration/8, 20..300)
#   --sample SECS       sampling period (default 10)
#   --no-report         do not generate the report at the end
# Environment: SOAK_NO_BUILD=1 skips `cargo build --release`; SOAK_BIN_DIR takes the binaries
# from another directory than target/release.
#
# Per target kind it runs two processes of the same kind:
#   subject  watched by ONE ckb-probe for the whole run (S-1, S-2, S-3, P-2, P-3, fidelity, storms);
#   control  attached and detached in alternating windows by short ckb-probe runs, so that its CPU
#            with and without probes is measured in the same run, under the same machine noise (P-1).
# For ckb the control is a second node syncing from the first (scripts/ckb-node.sh peer).
#
# Files in DIR: env.txt (machine, versions, command), samples.csv (/proc, every --sample s),
# machine.csv, phases.csv (control windows), kmsg.log (kernel log records during the run),
# <kind>/probe.ndjson (the subject's ckb-probe NDJSON), <kind>/probe.log, <kind>/control-*.ndjson,
# testbed/truth.json + control-truth.json + testbed.log (the workload's own counters), ckb/tips.csv.
# Everything started here stops by itself (bounded durations) and on Ctrl-C / SIGTERM.
set -euo pipefail
# The whole script is one block: bash reads it completely before running any of it, so editing or
# checking out another version of this file during a run of hours cannot break the run.
{
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
export PATH="$HOME/.cargo/bin:$PATH"

die() { printf 'soak: error: %s\n' "$*" >&2; exit 2; }
log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
now_ms() { date +%s%3N; }

DURATION="" OUT="" TARGET=testbed RATE=400 WINDOW="" STORM_EVERY=600 STORM_SECS=15 WARMUP="" SAMPLE=10 REPORT=1
CMDLINE="scripts/soak.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=${2:-}; shift 2 ;;
    --out) OUT=${2:-}; shift 2 ;;
    --target) TARGET=${2:-}; shift 2 ;;
    --rate) RATE=${2:-}; shift 2 ;;
    --window) WINDOW=${2:-}; shift 2 ;;
    --storm-every) STORM_EVERY=${2:-}; shift 2 ;;
    --storm-secs) STORM_SECS=${2:-}; shift 2 ;;
    --warmup) WARMUP=${2:-}; shift 2 ;;
    --sample) SAMPLE=${2:-}; shift 2 ;;
    --no-report) REPORT=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
isnum() { [[ "$1" =~ ^[0-9]+$ ]]; }
{ isnum "$DURATION" && [ "$DURATION" -ge 60 ]; } || die "--duration SECS (whole seconds, >= 60) is required"
[ -n "$OUT" ] || die "--out DIR is required"
case "$TARGET" in testbed | ckb | both) ;; *) die "--target must be testbed, ckb or both" ;; esac
{ isnum "$RATE" && [ "$RATE" -ge 1 ]; } || die "--rate must be a positive integer"
{ isnum "$STORM_EVERY" && isnum "$STORM_SECS" && [ "$STORM_SECS" -ge 1 ] && [ "$STORM_EVERY" -gt "$STORM_SECS" ]; } ||
  die "--storm-every must be longer than --storm-secs (whole seconds)"
{ isnum "$SAMPLE" && [ "$SAMPLE" -ge 1 ]; } || die "--sample must be a positive integer"
# Windows: 60 s, or a quarter of a short run (two with and two without probes at least).
[ -n "$WINDOW" ] || WINDOW=$((DURATION / 4 < 60 ? DURATION / 4 : 60))
{ isnum "$WINDOW" && [ "$WINDOW" -ge 20 ]; } || die "--window must be >= 20 s (a window holds a few samples)"
if [ -z "$WARMUP" ]; then
  WARMUP=$((DURATION / 8))
  [ "$WARMUP" -lt 20 ] && WARMUP=20
  [ "$WARMUP" -gt 300 ] && WARMUP=300
fi
isnum "$WARMUP" || die "--warmup must be whole seconds"
# The first storm comes once the baseline is learnt, so that the alert may fire.
STORM_AFTER=$((WARMUP + 30))
[ "$STORM_AFTER" -lt "$DURATION" ] || die "the first storm ($STORM_AFTER s) would start after the run; lengthen --duration"
[ "$(id -u)" = 0 ] || die "run as root (BPF programs, uprobes, /proc of other processes)"

if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then die "$OUT exists and is not empty"; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)

if [ "${SOAK_NO_BUILD:-0}" != 1 ]; then
  log "building (release)"
  cargo build --release --quiet
fi
# SOAK_BIN_DIR: where the binaries are (default: this checkout's target/release).
BIN_DIR=${SOAK_BIN_DIR:-$ROOT/target/release}
for b in ckb-probe ckb-probe-testbed; do
  [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b missing: cargo build --release"
done
if [ "$REPORT" = 1 ]; then
  [ -x "$BIN_DIR/ckb-probe-soak-report" ] || die "$BIN_DIR/ckb-probe-soak-report missing: cargo build --release"
fi

WORK=$(mktemp -d /tmp/ckb-probe-soak.XXXX)
# The run uses copies of the binaries: a rebuild during a run of hours must not swap the
# ckb-probe that the control windows launch, nor the report generator, halfway through.
cp "$BIN_DIR/ckb-probe" "$BIN_DIR/ckb-probe-testbed" "$WORK/"
PROBE=$WORK/ckb-probe
BED=$WORK/ckb-probe-testbed
REPORTER=$WORK/ckb-probe-soak-report
if [ "$REPORT" = 1 ]; then cp "$BIN_DIR/ckb-probe-soak-report" "$REPORTER"; fi
PIDS=()        # every background process started here, stopped in reverse order
NODE_DIR=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  # ckb-probe detaches on SIGTERM; the testbed finishes its measured phase and writes its truth.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    for _ in $(seq 100); do kill -0 "${PIDS[i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  if [ -n "$NODE_DIR" ]; then "$ROOT/scripts/ckb-node.sh" stop "$NODE_DIR" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted; stopping everything started here"; exit 130' INT TERM

# ---------------------------------------------------------------- environment (reproduction)
CLK_TCK=$(getconf CLK_TCK)
{
  echo "started_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=$CMDLINE"
  echo "duration_secs=$DURATION"
  echo "target=$TARGET"
  echo "rate=$RATE"
  echo "window_secs=$WINDOW"
  echo "sample_secs=$SAMPLE"
  echo "warmup_secs=$WARMUP"
  echo "storm_after_secs=$STORM_AFTER"
  echo "storm_secs=$STORM_SECS"
  echo "storm_every_secs=$STORM_EVERY"
  echo "clk_tck=$CLK_TCK"
  echo "kernel=$(uname -srmv)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "cpus=$(nproc)"
  echo "mem_total_kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
  echo "os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)"
  echo "ckb_probe_version=$("$PROBE" --version 2>/dev/null || echo unknown)"
  echo "ckb_probe_commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '-dirty')"
  echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"

# ---------------------------------------------------------------- kernel log (S-3)
# /dev/kmsg records are "prio,seq,usecs,flags;text": remember the last sequence number now and
# keep only the records after it (a wrapped ring buffer shows as a gap in the numbers).
kmsg_records() { dd if=/dev/kmsg iflag=nonblock bs=16384 2>/dev/null || true; }
KMSG_SEQ=$(kmsg_records | tail -1 | cut -d, -f2)
KMSG_SEQ=${KMSG_SEQ:-0}
: >"$OUT/kmsg.log"
kmsg_poll() {
  local line seq
  while IFS= read -r line; do
    seq=$(cut -d, -f2 <<<"$line")
    isnum "$seq" || continue
    if [ "$seq" -gt "$KMSG_SEQ" ]; then
      printf '%s\t%s\n' "$(now_ms)" "$line" >>"$OUT/kmsg.log"
      KMSG_SEQ=$seq
    fi
  done < <(kmsg_records)
}

# ---------------------------------------------------------------- process helpers
wait_for() { # FILE PATTERN SECS: until FILE contains PATTERN
  local t
  for t in $(seq $(($3 * 10))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# start_probe NAME PID OUTFILE LOGFILE DURATION INTERVAL: ckb-probe with every layer on PID; waits
# until it has attached ("ckb-probe: tracing" on stderr). Sets PROBE_PID.
start_probe() {
  local name=$1 pid=$2 out=$3 logf=$4 dur=$5 iv=$6
  "$PROBE" rocksdb --pid "$pid" --with syscall,net --json --interval "$iv" --warmup "$WARMUP" \
    --duration "$dur" >"$out" 2>"$logf" &
  PROBE_PID=$!
  if ! wait_for "$logf" 'ckb-probe: tracing ' 60; then
    cat "$logf" >&2
    die "$name: ckb-probe did not attach to pid $pid within 60 s"
  fi
}

# ---------------------------------------------------------------- targets
ROLES=()       # "role pid" pairs sampled from /proc
add_role() { ROLES+=("$1 $2"); }
END_AT=$(($(date +%s) + DURATION))

start_testbed() {
  local d=$OUT/testbed
  mkdir -p "$d"
  # Subject: steady rate, periodic storms, its own counters once a second on stderr (-v).
  "$BED" --threads 2 --rate "$RATE" --duration "$DURATION" --no-latency-samples --verbose \
    --storm-after "$STORM_AFTER" --storm-secs "$STORM_SECS" --storm-every "$STORM_EVERY" \
    --start-file "$WORK/testbed.start" --output "$d/truth.json" --db "$WORK/testbed-db" \
    >"$WORK/testbed.out" 2>"$d/testbed.log" &
  TB_PID=$!
  PIDS+=("$TB_PID")
  # Control: the same load without storms (storms would swamp a with/without comparison).
  "$BED" --threads 2 --rate "$RATE" --duration "$DURATION" --no-latency-samples \
    --start-file "$WORK/control.start" --output "$d/control-truth.json" --db "$WORK/control-db" \
    >"$WORK/control.out" 2>"$d/control.log" &
  TBC_PID=$!
  PIDS+=("$TBC_PID")
  wait_for "$WORK/testbed.out" READY 120 || die "testbed did not start (see $d/testbed.log)"
  wait_for "$WORK/control.out" READY 120 || die "control testbed did not start (see $d/control.log)"
  # The subject's probe is attached before the measured phase starts: every call is counted.
  # It ends when the testbed exits (target_exited); the duration only bounds it.
  start_probe "testbed subject" "$TB_PID" "$d/probe.ndjson" "$d/probe.log" $((DURATION + 60)) 1
  TBP_PID=$PROBE_PID
  PIDS+=("$TBP_PID")
  touch "$WORK/testbed.start" "$WORK/control.start"
  echo "measured_start_ms=$(now_ms)" >>"$d/start.txt"
  add_role testbed.probe "$TBP_PID"
  add_role testbed.subject "$TB_PID"
  add_role testbed.control "$TBC_PID"
  log "testbed: subject pid $TB_PID (probe pid $TBP_PID), control pid $TBC_PID"
}

free_port() { # a free loopback port from a starting point
  local p=$1
  while [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; do p=$((p + 1)); done
  echo "$p"
}

start_ckb() {
  local d=$OUT/ckb out
  mkdir -p "$d"
  "$ROOT/scripts/ckb-node.sh" install >&2
  NODE_DIR=$WORK/node
  local rpc p2p prpc pp2p
  rpc=$(free_port 28114); p2p=$(free_port $((rpc + 1)))
  prpc=$(free_port $((p2p + 1))); pp2p=$(free_port $((prpc + 1)))
  # Its own state file: other users of ckb-node.sh on this machine keep theirs.
  export CKB_NODE_STATE=$WORK/ckb-node-state
  out=$(CKB_RPC_PORT=$rpc CKB_P2P_PORT=$p2p "$ROOT/scripts/ckb-node.sh" start "$NODE_DIR" | tail -1)
  eval "$out" # sets CKB_NODE_DIR, CKB_PID, CKB_RPC
  CKB_NODE_PID=${CKB_PID:?}
  CKB_NODE_RPC=$rpc
  out=$(CKB_PEER_RPC_PORT=$prpc CKB_PEER_P2P_PORT=$pp2p "$ROOT/scripts/ckb-node.sh" peer "$NODE_DIR" "$WORK/peer" | tail -1)
  eval "$out"
  CKB_CONTROL_PID=$CKB_PEER_PID
  CKB_CONTROL_RPC=$prpc
  "$(command -v ckb || echo "$HOME/.cargo/bin/ckb")" --version >"$d/version.txt" 2>/dev/null || true
  echo "ckb_version=$(cat "$d/version.txt")" >>"$OUT/env.txt"
  start_probe "ckb subject" "$CKB_NODE_PID" "$d/probe.ndjson" "$d/probe.log" "$DURATION" 1
  CKBP_PID=$PROBE_PID
  PIDS+=("$CKBP_PID")
  add_role ckb.probe "$CKBP_PID"
  add_role ckb.subject "$CKB_NODE_PID"
  add_role ckb.control "$CKB_CONTROL_PID"
  echo "epoch_ms,node_tip,control_tip" >"$d/tips.csv"
  log "ckb: node pid $CKB_NODE_PID (probe pid $CKBP_PID), control peer pid $CKB_CONTROL_PID"
}

# The node's tip (decimal), or nothing when its RPC does not answer.
tip_of() {
  local hex
  # (the response has no trailing newline: keep it in a variable, `read` would report EOF)
  hex=$(curl -s --max-time 2 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"get_tip_block_number","params":[]}' "http://127.0.0.1:$1/" 2>/dev/null |
    sed -n 's/.*"result":"0x\([0-9a-fA-F]*\)".*/\1/p') || true
  if [ -n "$hex" ]; then echo $((16#$hex)); fi
}

# ---------------------------------------------------------------- control windows (P-1)
# One background loop per kind: probes on for WINDOW s, off for WINDOW s, ... until the end.
# phases.csv: epoch_ms,kind,event with event = start (probe launched), on (attached), off (detached).
echo "epoch_ms,kind,event" >"$OUT/phases.csv"
control_loop() {
  local kind=$1 pid=$2 k=0 left cpid=""
  # A signal interrupts `wait`; the probe detaches on SIGTERM.
  trap 'if [ -n "$cpid" ]; then kill -TERM "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null; fi; exit 0' TERM INT
  while :; do
    left=$((END_AT - $(date +%s)))
    [ "$left" -gt 5 ] || break
    kill -0 "$pid" 2>/dev/null || break
    if [ $((k % 2)) = 0 ]; then
      local w=$((WINDOW < left ? WINDOW : left))
      "$PROBE" rocksdb --pid "$pid" --with syscall,net --json --interval 10 --warmup "$WARMUP" \
        --duration "$w" >"$OUT/$kind/control-$k.ndjson" 2>"$WORK/$kind-control-$k.log" &
      cpid=$!
      echo "$(now_ms),$kind,start" >>"$OUT/phases.csv"
      echo "$cpid" >"$WORK/$kind-control.pid"
      if wait_for "$WORK/$kind-control-$k.log" 'ckb-probe: tracing ' 60; then
        echo "$(now_ms),$kind,on" >>"$OUT/phases.csv"
      fi
      wait "$cpid" || true
      echo "$(now_ms),$kind,off" >>"$OUT/phases.csv"
      : >"$WORK/$kind-control.pid"
      cpid=""
    else
      sleep "$((WINDOW < left ? WINDOW : left))" &
      cpid=$!
      wait "$cpid" || true
      cpid=""
    fi
    k=$((k + 1))
  done
}

# ---------------------------------------------------------------- sampling
# samples.csv: one row per process per sample, raw counters (the report computes the rates):
# utime/stime in clock ticks (clk_tck in env.txt), RSS in kB, threads.
echo "epoch_ms,role,pid,utime,stime,rss_kb,threads" >"$OUT/samples.csv"
echo "epoch_ms,load1,cpu_busy_ticks,cpu_total_ticks" >"$OUT/machine.csv"
sample_once() {
  local t r role pid stat rest f f2 rss thr
  t=$(now_ms)
  for r in "${ROLES[@]}"; do
    role=${r% *} pid=${r#* }
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # fields after "(comm)": state is field 3, utime 14, stime 15, num_threads 20
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    [ "${f[0]}" = Z ] && continue
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    thr=${f[17]}
    echo "$t,$role,$pid,${f[11]},${f[12]},${rss:-0},$thr" >>"$OUT/samples.csv"
  done
  # the alternating control probes, while one runs
  for f2 in "$WORK"/*-control.pid; do
    [ -s "$f2" ] || continue
    pid=$(cat "$f2")
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    echo "$t,$(basename "$f2" .pid | tr - _ | sed 's/_control$/.control_probe/'),$pid,${f[11]},${f[12]},${rss:-0},${f[17]}" >>"$OUT/samples.csv"
  done
  local us ni sy id io irq sirq st
  read -r _ us ni sy id io irq sirq st _ </proc/stat
  echo "$t,$(cut -d' ' -f1 /proc/loadavg),$((us + ni + sy + irq + sirq + st)),$((us + ni + sy + id + io + irq + sirq + st))" >>"$OUT/machine.csv"
  if [ -n "${CKB_NODE_RPC:-}" ]; then
    echo "$t,$(tip_of "$CKB_NODE_RPC"),$(tip_of "$CKB_CONTROL_RPC")" >>"$OUT/ckb/tips.csv"
  fi
  kmsg_poll
}

case "$TARGET" in
  testbed) start_testbed ;;
  ckb) start_ckb ;;
  both) start_testbed; start_ckb ;;
esac
# The run's clock starts once every subject is traced.
END_AT=$(($(date +%s) + DURATION))
echo "run_start_ms=$(now_ms)" >>"$OUT/env.txt"
if [ -n "${TBC_PID:-}" ]; then control_loop testbed "$TBC_PID" & PIDS+=("$!"); fi
if [ -n "${CKB_CONTROL_PID:-}" ]; then control_loop ckb "$CKB_CONTROL_PID" & PIDS+=("$!"); fi

log "running for ${DURATION}s (sample every ${SAMPLE}s, windows of ${WINDOW}s, output in $OUT)"
next=$(date +%s)
last_note=$next
while [ "$(date +%s)" -lt "$END_AT" ]; do
  sample_once
  if [ $(($(date +%s) - last_note)) -ge 600 ]; then
    last_note=$(date +%s)
    log "$(((END_AT - last_note) / 60)) min left"
  fi
  next=$((next + SAMPLE))
  while [ "$(date +%s)" -lt "$next" ] && [ "$(date +%s)" -lt "$END_AT" ]; do sleep 0.5; done
done
sample_once

# ---------------------------------------------------------------- the end
# The subject testbed ends its measured phase now; its ckb-probe then sees it exit and writes the
# summary. A real node keeps running: its ckb-probe ends by its own --duration.
log "run over; waiting for the targets and the probes to finish"
wait_exit() { # PID SECS
  local i
  for i in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
for p in ${TB_PID:-} ${TBC_PID:-}; do wait_exit "$p" 120 || log "warning: testbed pid $p still running"; done
for p in ${TBP_PID:-} ${CKBP_PID:-}; do
  wait_exit "$p" 90 || log "warning: ckb-probe pid $p still running"
  rc=0
  wait "$p" 2>/dev/null || rc=$?
  echo "$rc" >"$OUT/probe-$p.exit"
done
for p in ${TBP_PID:-}; do cp "$OUT/probe-$p.exit" "$OUT/testbed/probe.exit"; done
for p in ${CKBP_PID:-}; do cp "$OUT/probe-$p.exit" "$OUT/ckb/probe.exit"; done
rm -f "$OUT"/probe-*.exit
sample_once || true
kmsg_poll
echo "ended_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$OUT/env.txt"
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
# Everything started above is over (or is stopped by the EXIT trap, with the node).

if [ "$REPORT" = 1 ]; then
  log "generating $OUT/REPORT.md"
  "$REPORTER" --dir "$OUT"
fi
log "done: $OUT"
exit 0
}
