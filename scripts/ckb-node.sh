#!/usr/bin/env bash
# Runs a real CKB node (a loopback-only dev chain with a Dummy miner) as a tracing target for ckb-probe.
#
# Usage: scripts/ckb-node.sh <command> [args]
#   install              cargo install the ckb node binary (CKB_VERSION, default 0.210.0); instant when present
#   start [DIR]          init (if needed) a dev chain in DIR (default: new /tmp/ckb-probe-node.XXXX), start
#                        `ckb run` + `ckb miner`, wait until 3 blocks are mined; last stdout line:
#                        CKB_NODE_DIR=<dir> CKB_PID=<pid> CKB_RPC=http://127.0.0.1:<port>
#   stop [DIR]           stop miner then node (SIGTERM, 20 s, SIGKILL); also stops peers started with `peer DIR`;
#                        idempotent. DIR defaults to $CKB_NODE_DIR.
#   status [DIR]         pids alive or not, tip block number, peer count (exit 1 when the node is not running);
#                        DIR defaults to $CKB_NODE_DIR, else the node last started here ($CKB_NODE_STATE)
#   peer DIR [PEER_DIR]  start a second node (no miner) in PEER_DIR with the node in DIR as its bootnode and wait
#                        until DIR's node lists it in get_peers; last stdout line:
#                        CKB_PEER_DIR=<dir> CKB_PEER_PID=<pid> CKB_PEER_RPC=http://127.0.0.1:<port>
#   init-peer DIR PEER_DIR  initialise (not start) a node in PEER_DIR on DIR's chain (same genesis), with no
#                        bootnode: start it with `ckb run -C PEER_DIR` and connect it when wanted with the
#                        `add_node` RPC (e.g. after attaching probes, to time its initial block download); last
#                        stdout line: CKB_PEER_DIR=<dir> CKB_PEER_RPC=http://127.0.0.1:<port>
#   demo-env [DIR]       install, then start
#
# Environment:
#   CKB_RPC_PORT (8114) CKB_P2P_PORT (8115)            ports of the node made by `start`
#   CKB_PEER_RPC_PORT (8124) CKB_PEER_P2P_PORT (8125)  ports of the node made by `peer`
#   CKB_MINER_DELAY_MS (300)  Dummy worker's constant delay per block
#   CKB_METRICS_PORT (unset)  if set, enable CKB's Prometheus exporter on 127.0.0.1:<port> (start only)
#   CKB_START_TIMEOUT (120) CKB_PEER_TIMEOUT (60) CKB_STOP_TIMEOUT (20)  seconds
#   CKB_BIN     ckb binary to use (default: `ckb` from PATH, else ~/.cargo/bin/ckb)
#   CKB_VERSION (0.210.0)     version `install` makes sure of
#   CKB_NODE_STATE (/tmp/ckb-probe-last-node)  file remembering the last started DIR (used by status only)
#
# Messages go to stderr with a [ckb-node] prefix; only the final KEY=VALUE line goes to stdout, so
#   eval "$(scripts/ckb-node.sh start)"   sets CKB_NODE_DIR, CKB_PID and CKB_RPC in the calling shell.
# Every listener is bound to 127.0.0.1.
set -euo pipefail

CKB_VERSION="${CKB_VERSION:-0.210.0}"
BA_ARG=0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7
STATE_FILE="${CKB_NODE_STATE:-/tmp/ckb-probe-last-node}"
CARGO_BIN_DIR="$HOME/.cargo/bin"
case ":$PATH:" in *":$CARGO_BIN_DIR:"*) ;; *) PATH="$PATH:$CARGO_BIN_DIR" ;; esac
export PATH

log() { printf '[ckb-node] %s\n' "$*" >&2; }
die() { printf '[ckb-node] error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
# seconds with one decimal between two now_ms values
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; }

# ---------------------------------------------------------------- the ckb binary

# Prints "X.Y.Z" for a ckb binary, or nothing.
ckb_version_of() {
  local out
  out=$("$1" --version 2>/dev/null) || return 0
  # "ckb 0.210.0 ( )"
  awk '{ print $2; exit }' <<<"$out"
}

# Sets CKB to the binary to run: CKB_BIN, else the first of (PATH, ~/.cargo/bin) with the wanted version,
# else the first one found at all.
find_ckb() {
  local candidates=() c first=""
  if [ -n "${CKB_BIN:-}" ]; then
    [ -x "$CKB_BIN" ] || die "CKB_BIN=$CKB_BIN is not an executable"
    CKB=$CKB_BIN
    return 0
  fi
  c=$(command -v ckb 2>/dev/null || true)
  [ -n "$c" ] && candidates+=("$c")
  [ -x "$CARGO_BIN_DIR/ckb" ] && candidates+=("$CARGO_BIN_DIR/ckb")
  for c in "${candidates[@]}"; do
    [ -z "$first" ] && first=$c
    if [ "$(ckb_version_of "$c")" = "$CKB_VERSION" ]; then
      CKB=$c
      return 0
    fi
  done
  if [ -n "$first" ]; then
    log "warning: no ckb $CKB_VERSION found; using $first ($(ckb_version_of "$first"))"
    CKB=$first
    return 0
  fi
  die "no ckb binary (looked in PATH and $CARGO_BIN_DIR); run: $0 install"
}

# Pids of running `cargo install ... ckb ...` processes (matched on the process name, not on any shell
# command line that merely mentions the words).
cargo_install_ckb_pids() {
  local pid argv a install
  for pid in $(pgrep -x cargo 2>/dev/null || true); do
    mapfile -d "" -t argv 2>/dev/null <"/proc/$pid/cmdline" || continue
    install=0
    for a in "${argv[@]:1}"; do
      case "$a" in
        install) install=1 ;;
        ckb | ckb@*) if [ "$install" = 1 ]; then echo "$pid"; break; fi ;;
      esac
    done
  done
}

cmd_install() {
  local c v pids cargo
  for c in "${CKB_BIN:-}" "$(command -v ckb 2>/dev/null || true)" "$CARGO_BIN_DIR/ckb"; do
    [[ -n "$c" && -x "$c" ]] || continue
    v=$(ckb_version_of "$c")
    if [ "$v" = "$CKB_VERSION" ]; then
      log "ckb $CKB_VERSION present: $c"
      return 0
    fi
  done

  pids=$(cargo_install_ckb_pids)
  if [ -n "$pids" ]; then
    log "another 'cargo install ckb' is running (pid $(paste -sd' ' <<<"$pids")); waiting for it instead of starting a second build"
    local t0=$SECONDS
    while [ -n "$(cargo_install_ckb_pids)" ]; do
      sleep 15
      if (((SECONDS - t0) % 120 < 15)); then log "still waiting for the running cargo install ($((SECONDS - t0)) s)"; fi
    done
    log "the running cargo install finished after $((SECONDS - t0)) s"
    if [ -x "$CARGO_BIN_DIR/ckb" ] && [ "$(ckb_version_of "$CARGO_BIN_DIR/ckb")" = "$CKB_VERSION" ]; then
      log "ckb $CKB_VERSION present: $CARGO_BIN_DIR/ckb"
      return 0
    fi
    log "it did not leave ckb $CKB_VERSION in $CARGO_BIN_DIR; building it now"
  fi

  if [ -x "$CARGO_BIN_DIR/cargo" ]; then cargo=$CARGO_BIN_DIR/cargo; else cargo=$(command -v cargo 2>/dev/null) || die "cargo not found; install Rust (rustup, stable >= 1.95)"; fi
  command -v clang >/dev/null 2>&1 || die "clang not found (needed to build RocksDB bindings); run scripts/bootstrap.sh"
  if ! compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null && ! compgen -G '/usr/lib/*/libclang*.so*' >/dev/null \
    && [ -z "${LIBCLANG_PATH:-}" ]; then
    die "libclang not found (bindgen needs it); run scripts/bootstrap.sh"
  fi
  log "building ckb $CKB_VERSION with '$cargo install ckb --locked --version $CKB_VERSION'"
  log "this takes about 20-25 minutes on 2 cores the first time (RocksDB and ~600 crates); progress follows"
  local t0=$SECONDS
  "$cargo" install ckb --locked --version "$CKB_VERSION" || die "cargo install ckb $CKB_VERSION failed (see the output above)"
  v=$(ckb_version_of "$CARGO_BIN_DIR/ckb")
  [ "$v" = "$CKB_VERSION" ] || die "after cargo install, $CARGO_BIN_DIR/ckb reports version '$v', expected $CKB_VERSION"
  log "ckb $CKB_VERSION installed in $CARGO_BIN_DIR/ckb ($((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------- small helpers

port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

check_ports_free() {
  local p
  for p in "$@"; do
    [[ "$p" =~ ^[0-9]+$ && "$p" -ge 1 && "$p" -le 65535 ]] || die "invalid port '$p'"
    if port_in_use "$p"; then
      die "port $p is already in use ($(ss -Hltnp "sport = :$p" 2>/dev/null | awk '{print $4, $6}' | head -1)); pick other ports with CKB_RPC_PORT/CKB_P2P_PORT (or CKB_PEER_RPC_PORT/CKB_PEER_P2P_PORT for peer)"
    fi
  done
  # the same port twice would also fail
  [ "$(printf '%s\n' "$@" | sort -u | wc -l)" -eq $# ] || die "ports must differ: $*"
}

# JSON-RPC call: rpc PORT METHOD [PARAMS_JSON]; prints the raw response.
rpc() {
  curl -s --max-time "${RPC_MAX_TIME:-3}" -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-[]}}" "http://127.0.0.1:$1/"
}

# Tip block number (decimal) of the node with RPC on PORT; fails when the RPC does not answer.
tip_of() {
  local out hex
  out=$(rpc "$1" get_tip_block_number 2>/dev/null) || return 1
  hex=$(sed -n 's/.*"result":"0x\([0-9a-fA-F]*\)".*/\1/p' <<<"$out")
  [ -n "$hex" ] || return 1
  echo $((16#$hex))
}

node_id_of() {
  local out
  out=$(rpc "$1" local_node_info 2>/dev/null) || return 1
  out=$(grep -o '"node_id":"[^"]*"' <<<"$out" | head -1 | cut -d'"' -f4) || true
  [ -n "$out" ] || return 1
  echo "$out"
}

# Node ids of the connected peers, one per line.
peer_ids_of() {
  local out
  out=$(rpc "$1" get_peers 2>/dev/null) || return 1
  grep -o '"node_id":"[^"]*"' <<<"$out" | cut -d'"' -f4 || true
}

# toml_get FILE SECTION KEY: the raw value of KEY in [SECTION] ("" for top level), trailing comment removed.
toml_get() {
  awk -v sec="$2" -v key="$3" '
    /^[[:space:]]*\[/ { s = $0; gsub(/^[[:space:]]*\[+|\]+[[:space:]]*(#.*)?$/, "", s); cur = s; next }
    cur == sec && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
      v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); sub(/[[:space:]]+#.*$/, "", v); print v; exit
    }' "$1"
}

# toml_set FILE SECTION KEY VALUE: replace KEY in the first [SECTION] (or [[SECTION]]), adding the key (and
# the section at the end of the file) when missing. VALUE is raw TOML.
toml_set() {
  local tmp
  tmp=$(mktemp "$1.XXXX")
  awk -v sec="$2" -v key="$3" -v val="$4" '
    function emit() { print key " = " val; done = 1 }
    /^[[:space:]]*\[/ {
      if (cur == sec && !done && seen) emit()
      s = $0; gsub(/^[[:space:]]*\[+|\]+[[:space:]]*(#.*)?$/, "", s); cur = s
      if (cur == sec) { if (seen) cur = "(dup)"; seen = 1 }
      print; next
    }
    cur == sec && !done && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { emit(); next }
    { print }
    END {
      if (!done) {
        if (!seen) print "\n[" sec "]"
        else if (cur != sec) { print "[ckb-node: internal error, cannot place " key "]"; exit 1 }
        emit()
      }
    }' "$1" >"$tmp" || { rm -f "$tmp"; die "could not patch $1 ($2.$3)"; }
  mv "$tmp" "$1"
}

# Adds the quoted module names to [rpc] modules when missing.
ensure_rpc_modules() {
  local file=$1 mods m
  shift
  mods=$(toml_get "$file" rpc modules)
  [[ "$mods" == \[*\] ]] || die "unexpected rpc.modules in $file: '$mods'"
  for m in "$@"; do
    if [[ "$mods" != *"\"$m\""* ]]; then
      if [[ "$mods" =~ ^\[[[:space:]]*\]$ ]]; then mods="[\"$m\"]"; else mods="${mods%]}, \"$m\"]"; fi
    fi
  done
  toml_set "$file" rpc modules "$mods"
}

# Replaces every [[miner.workers]] table with one Dummy worker with a constant delay.
set_dummy_worker() {
  local file=$1 delay=$2 tmp
  tmp=$(mktemp "$file.XXXX")
  awk '
    /^[[:space:]]*\[/ { skip = ($0 ~ /^[[:space:]]*\[\[[[:space:]]*miner\.workers[[:space:]]*\]\]/) }
    !skip { line[++n] = $0 }
    END { while (n > 0 && line[n] ~ /^[[:space:]]*$/) n--; for (i = 1; i <= n; i++) print line[i] }' "$file" >"$tmp"
  printf '\n[[miner.workers]]\nworker_type = "Dummy"\ndelay_type = "Constant"\nvalue = %s\n' "$delay" >>"$tmp"
  mv "$tmp" "$file"
}

# rpc port and p2p port configured in DIR/ckb.toml
rpc_port_of_dir() { toml_get "$1/ckb.toml" rpc listen_address | sed -n 's/.*:\([0-9]*\)".*/\1/p'; }
p2p_port_of_dir() { toml_get "$1/ckb.toml" network listen_addresses | sed -n 's#.*/tcp/\([0-9]*\).*#\1#p' | head -1; }

# Pid from PIDFILE when that process is alive and is a ckb process of DIR; else nothing.
live_pid() {
  local pidfile=$1 dir=$2 pid args
  [ -s "$pidfile" ] || return 0
  pid=$(tr -dc '0-9' <"$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  case "$args" in
    *ckb*" -C $dir "*) echo "$pid" ;;
  esac
}

# Alive and not a zombie (a detached ckb that exited stays a zombie until its new parent reaps it). A zombie
# thread-group leader whose other threads still run is a process still exiting: alive.
is_alive() {
  local st tasks
  kill -0 "$1" 2>/dev/null || return 1
  st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$st" = Z ] || return 0
  tasks=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  [ "$tasks" -gt 1 ]
}

# stop_pid PID NAME: SIGTERM, wait up to CKB_STOP_TIMEOUT s, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2 timeout=${CKB_STOP_TIMEOUT:-20} t0
  is_alive "$pid" || return 0
  log "stopping $name (pid $pid) with SIGTERM"
  t0=$(now_ms)
  kill -TERM "$pid" 2>/dev/null || true
  while is_alive "$pid"; do
    if [ $(($(now_ms) - t0)) -ge $((timeout * 1000)) ]; then
      log "$name (pid $pid) still alive after ${timeout} s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  # a zombie counts as stopped: reap it if it is our child
  wait "$pid" 2>/dev/null || true
  log "$name (pid $pid) stopped after $(secs "$t0" "$(now_ms)") s"
}

# Starts "$CKB" ARGS... detached (own session), output to LOG, pid to PIDFILE; sets LAUNCHED_PID.
launch() {
  local logf=$1 pidf=$2
  shift 2
  if command -v setsid >/dev/null 2>&1; then
    # a background child of a non-interactive shell is not a group leader, so setsid execs in place
    # and $! is the ckb process itself
    setsid "$CKB" "$@" >>"$logf" 2>&1 </dev/null &
  else
    nohup "$CKB" "$@" >>"$logf" 2>&1 </dev/null &
  fi
  LAUNCHED_PID=$!
  echo "$LAUNCHED_PID" >"$pidf"
  STARTED_PIDS+=("$LAUNCHED_PID")
  STARTED_PIDFILES+=("$pidf")
  STARTED_NAMES+=("ckb $1")
}

show_logs() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf '[ckb-node] ---- last 30 lines of %s ----\n' "$f" >&2
    tail -n 30 "$f" | sed 's/\x1b\[[0-9;]*m//g' >&2
  done
}

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# default_dir ARG [state]: ARG, else $CKB_NODE_DIR (set by eval "$(... start)"), else -- only when the second
# argument is "state" (read-only commands) -- the node last started on this machine. `stop` never falls back
# to that file: other users of this script on the same machine may have started a node since.
default_dir() {
  local d=${1:-${CKB_NODE_DIR:-}}
  if [ -z "$d" ] && [ "${2:-}" = state ] && [ -s "$STATE_FILE" ]; then
    d=$(cat "$STATE_FILE")
    log "no DIR given; using the node last started on this machine: $d"
  fi
  [ -n "$d" ] || die "no DIR given (and CKB_NODE_DIR is not set)"
  [ -d "$d" ] || die "no such directory: $d"
  (cd "$d" && pwd -P)
}

# ---------------------------------------------------------------- start / peer machinery

STARTED_PIDS=()
STARTED_PIDFILES=()
STARTED_NAMES=()
START_OK=0
FAIL_LOGS=()
FAIL_DIR=""

on_start_exit() {
  local rc=$? i
  [ "$START_OK" = 1 ] && return 0
  [ "$rc" = 0 ] && rc=1
  if [ ${#STARTED_PIDS[@]} -gt 0 ]; then
    show_logs "${FAIL_LOGS[@]}"
    log "cleaning up what this command started (configuration, chain and logs stay in ${FAIL_DIR:-?})"
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
      stop_pid "${STARTED_PIDS[i]}" "${STARTED_NAMES[i]}"
      rm -f "${STARTED_PIDFILES[i]}"
    done
  fi
  exit "$rc"
}

fail() {
  log "error: $*"
  exit 1
}

# init_node DIR RPC_PORT P2P_PORT: `ckb init --chain dev` unless DIR already holds a node, then patch the
# configuration (idempotent).
init_node() {
  local dir=$1 rpc_port=$2 p2p_port=$3
  if [ -f "$dir/ckb.toml" ]; then
    log "reusing the existing chain in $dir"
    [[ -f "$dir/ckb-miner.toml" && -f "$dir/specs/dev.toml" ]] || die "$dir has a ckb.toml but no ckb-miner.toml / specs/dev.toml"
  else
    log "initialising a dev chain in $dir (rpc 127.0.0.1:$rpc_port, p2p 127.0.0.1:$p2p_port)"
    "$CKB" init -C "$dir" --chain dev --ba-arg "$BA_ARG" --ba-message 0x \
      --rpc-port "$rpc_port" --p2p-port "$p2p_port" >"$dir/ckb-init.log" 2>&1 ||
      { cat "$dir/ckb-init.log" >&2; die "ckb init failed in $dir"; }
  fi
  local t="$dir/ckb.toml"
  grep -q '^[[:space:]]*func[[:space:]]*=[[:space:]]*"Dummy"' "$dir/specs/dev.toml" ||
    die "$dir/specs/dev.toml does not use the Dummy PoW; the Dummy miner's blocks would be rejected"
  toml_set "$t" network listen_addresses "[\"/ip4/127.0.0.1/tcp/$p2p_port\"]"
  toml_set "$t" network discovery_local_address true
  toml_set "$t" network upnp false
  toml_set "$t" rpc listen_address "\"127.0.0.1:$rpc_port\""
  ensure_rpc_modules "$t" Net Chain Miner IntegrationTest
  toml_set "$t" logger color false
}

wait_rpc() { # PORT PID DEADLINE_S NAME: until the RPC answers; fails when PID dies or at DEADLINE_S (SECONDS)
  local port=$1 pid=$2 deadline=$3 name=$4
  until tip_of "$port" >/dev/null; do
    is_alive "$pid" || fail "$name (pid $pid) exited before its RPC answered"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name's RPC on 127.0.0.1:$port did not answer in time"
    sleep 0.3
  done
}

cmd_start() {
  local dir rpc_port=${CKB_RPC_PORT:-8114} p2p_port=${CKB_P2P_PORT:-8115} delay=${CKB_MINER_DELAY_MS:-300}
  local timeout=${CKB_START_TIMEOUT:-120} metrics=${CKB_METRICS_PORT:-}
  [[ "$delay" =~ ^[0-9]+$ ]] || die "CKB_MINER_DELAY_MS must be a number of milliseconds"
  find_ckb
  local pid mpid
  if [ -n "${1:-}" ]; then
    dir=$(abs_dir "$1")
    pid=$(live_pid "$dir/ckb.pid" "$dir")
    if [ -n "$pid" ]; then
      local port
      port=$(rpc_port_of_dir "$dir")
      mpid=$(live_pid "$dir/miner.pid" "$dir")
      log "a node is already running in $dir (pid $pid, miner ${mpid:-not running}); stop it first to restart"
      echo "$dir" >"$STATE_FILE"
      echo "CKB_NODE_DIR=$dir CKB_PID=$pid CKB_RPC=http://127.0.0.1:$port"
      return 0
    fi
    rm -f "$dir/ckb.pid" "$dir/miner.pid"
  fi

  local ports=("$rpc_port" "$p2p_port")
  if [ -n "$metrics" ]; then ports+=("$metrics"); fi
  check_ports_free "${ports[@]}"
  if [ -z "${1:-}" ]; then
    dir=$(mktemp -d /tmp/ckb-probe-node.XXXX)
    log "node directory: $dir"
  fi
  log "using $CKB ($(ckb_version_of "$CKB"))"
  init_node "$dir" "$rpc_port" "$p2p_port"
  if [ -n "$metrics" ]; then
    toml_set "$dir/ckb.toml" metrics.exporter.prometheus target \
      "{ type = \"prometheus\", listen_address = \"127.0.0.1:$metrics\" }"
  fi
  local m="$dir/ckb-miner.toml"
  toml_set "$m" miner.client rpc_url "\"http://127.0.0.1:$rpc_port/\""
  toml_set "$m" logger color false
  set_dummy_worker "$m" "$delay"

  trap on_start_exit EXIT
  trap 'exit 130' INT TERM
  FAIL_LOGS=("$dir/ckb-run.log" "$dir/ckb-miner.log")
  FAIL_DIR=$dir
  local deadline=$((SECONDS + timeout)) t0 t_rpc t_first t_done base tip first_tip=""
  t0=$(now_ms)
  launch "$dir/ckb-run.log" "$dir/ckb.pid" run -C "$dir"
  pid=$LAUNCHED_PID
  log "ckb run started (pid $pid, log $dir/ckb-run.log); waiting for RPC on 127.0.0.1:$rpc_port"
  wait_rpc "$rpc_port" "$pid" "$deadline" "ckb run"
  t_rpc=$(now_ms)
  base=$(tip_of "$rpc_port")
  log "RPC answers after $(secs "$t0" "$t_rpc") s, tip $base; starting the miner (Dummy, ${delay} ms per block)"

  launch "$dir/ckb-miner.log" "$dir/miner.pid" miner -C "$dir"
  mpid=$LAUNCHED_PID
  log "ckb miner started (pid $mpid, log $dir/ckb-miner.log); waiting for the tip to grow by 3"
  while :; do
    is_alive "$pid" || fail "ckb run (pid $pid) exited"
    is_alive "$mpid" || fail "ckb miner (pid $mpid) exited"
    tip=$(tip_of "$rpc_port") || tip=$base
    if [ -z "$first_tip" ] && [ "$tip" -gt "$base" ]; then first_tip=$tip; t_first=$(now_ms); fi
    [ "$tip" -ge $((base + 3)) ] && break
    [ "$SECONDS" -lt "$deadline" ] || fail "tip did not grow by 3 within ${timeout} s (from $base, now $tip)"
    sleep 0.2
  done
  t_done=$(now_ms)
  log "tip $base -> $tip: first block $(secs "$t_rpc" "$t_first") s after the miner started, $((tip - base)) blocks in $(secs "$t_rpc" "$t_done") s (total start $(secs "$t0" "$t_done") s)"
  START_OK=1
  trap - EXIT INT TERM
  echo "$dir" >"$STATE_FILE"
  if [ -n "$metrics" ]; then log "Prometheus metrics: http://127.0.0.1:$metrics/"; fi
  log "stop with: $0 stop $dir"
  echo "CKB_NODE_DIR=$dir CKB_PID=$pid CKB_RPC=http://127.0.0.1:$rpc_port"
}

cmd_peer() {
  [ -n "${1:-}" ] || die "usage: $0 peer DIR [PEER_DIR]"
  local dir pdir rpc_port=${CKB_PEER_RPC_PORT:-8124} p2p_port=${CKB_PEER_P2P_PORT:-8125}
  local timeout=${CKB_PEER_TIMEOUT:-60}
  dir=$(default_dir "$1")
  find_ckb
  local main_pid main_rpc main_p2p main_id
  main_pid=$(live_pid "$dir/ckb.pid" "$dir")
  [ -n "$main_pid" ] || die "no node running in $dir; start it first: $0 start $dir"
  main_rpc=$(rpc_port_of_dir "$dir")
  main_p2p=$(p2p_port_of_dir "$dir")
  [[ -n "$main_rpc" && -n "$main_p2p" ]] || die "could not read the rpc/p2p ports from $dir/ckb.toml"
  main_id=$(node_id_of "$main_rpc") || die "could not read node_id from local_node_info on 127.0.0.1:$main_rpc"

  local pid
  if [ -n "${2:-}" ]; then
    pdir=$(abs_dir "$2")
    [ "$pdir" != "$dir" ] || die "PEER_DIR must differ from DIR"
    pid=$(live_pid "$pdir/ckb.pid" "$pdir")
    if [ -n "$pid" ]; then
      log "a node is already running in $pdir (pid $pid); stop it first to restart"
      echo "CKB_PEER_DIR=$pdir CKB_PEER_PID=$pid CKB_PEER_RPC=http://127.0.0.1:$(rpc_port_of_dir "$pdir")"
      return 0
    fi
    rm -f "$pdir/ckb.pid" "$pdir/miner.pid"
  fi
  check_ports_free "$rpc_port" "$p2p_port"
  if [ -z "${2:-}" ]; then
    pdir=$(mktemp -d /tmp/ckb-probe-peer.XXXX)
    log "peer directory: $pdir"
  fi
  init_node "$pdir" "$rpc_port" "$p2p_port"
  local boot="/ip4/127.0.0.1/tcp/$main_p2p/p2p/$main_id"
  toml_set "$pdir/ckb.toml" network bootnodes "[\"$boot\"]"
  # `ckb init --chain dev` puts a timestamp in the genesis message, so every dev chain is different: the
  # peer needs the first node's spec, else both sides ban 127.0.0.1 for 300 s ("not on the same network").
  if ! cmp -s "$dir/specs/dev.toml" "$pdir/specs/dev.toml"; then
    if [ -e "$pdir/data/db/CURRENT" ]; then
      die "$pdir already holds a chain with another genesis than $dir (specs/dev.toml differ); use a new PEER_DIR"
    fi
    cp "$dir/specs/dev.toml" "$pdir/specs/dev.toml"
    log "copied $dir/specs/dev.toml to the peer (same genesis)"
  fi
  grep -qxF "$pdir" "$dir/peers" 2>/dev/null || echo "$pdir" >>"$dir/peers"

  trap on_start_exit EXIT
  trap 'exit 130' INT TERM
  FAIL_LOGS=("$pdir/ckb-run.log" "$dir/ckb-run.log")
  FAIL_DIR=$pdir
  local deadline=$((SECONDS + timeout)) t0 t1 peer_id main_tip peer_tip
  t0=$(now_ms)
  launch "$pdir/ckb-run.log" "$pdir/ckb.pid" run -C "$pdir"
  pid=$LAUNCHED_PID
  log "peer ckb run started (pid $pid, log $pdir/ckb-run.log), bootnode $boot"
  wait_rpc "$rpc_port" "$pid" "$deadline" "peer ckb run"
  peer_id=$(node_id_of "$rpc_port") || fail "could not read the peer's node_id"
  log "peer RPC answers after $(secs "$t0" "$(now_ms)") s (node id $peer_id); waiting for $dir's node to list it in get_peers"
  until peer_ids_of "$main_rpc" | grep -qxF "$peer_id"; do
    is_alive "$pid" || fail "peer ckb run (pid $pid) exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "the first node did not list the peer in get_peers within ${timeout} s"
    sleep 0.3
  done
  t1=$(now_ms)
  main_tip=$(tip_of "$main_rpc" || echo '?')
  peer_tip=$(tip_of "$rpc_port" || echo '?')
  log "connected $(secs "$t0" "$t1") s after start; tips: node $main_tip, peer $peer_tip (the peer syncs in the background)"
  START_OK=1
  trap - EXIT INT TERM
  log "stop with: $0 stop $pdir"
  echo "CKB_PEER_DIR=$pdir CKB_PEER_PID=$pid CKB_PEER_RPC=http://127.0.0.1:$rpc_port"
}

cmd_init_peer() {
  [[ -n "${1:-}" && -n "${2:-}" ]] || die "usage: $0 init-peer DIR PEER_DIR"
  local dir pdir rpc_port=${CKB_PEER_RPC_PORT:-8124} p2p_port=${CKB_PEER_P2P_PORT:-8125}
  dir=$(default_dir "$1")
  pdir=$(abs_dir "$2")
  [ "$pdir" != "$dir" ] || die "PEER_DIR must differ from DIR"
  [ ! -e "$pdir/ckb.toml" ] || die "$pdir already holds a node; use a new PEER_DIR"
  find_ckb
  check_ports_free "$rpc_port" "$p2p_port"
  init_node "$pdir" "$rpc_port" "$p2p_port"
  # Same genesis as DIR (see cmd_peer).
  cp "$dir/specs/dev.toml" "$pdir/specs/dev.toml"
  echo "CKB_PEER_DIR=$pdir CKB_PEER_RPC=http://127.0.0.1:$rpc_port"
}

stop_dir() {
  local dir=$1 pid mpid p
  if [ -f "$dir/peers" ]; then
    while IFS= read -r p; do
      if [ -n "$p" ] && [ -d "$p" ] && [ "$p" != "$dir" ]; then stop_dir "$p"; fi
    done <"$dir/peers"
  fi
  mpid=$(live_pid "$dir/miner.pid" "$dir")
  pid=$(live_pid "$dir/ckb.pid" "$dir")
  if [ -z "$mpid" ] && [ -z "$pid" ]; then
    log "nothing running in $dir"
  fi
  if [ -n "$mpid" ]; then stop_pid "$mpid" "ckb miner ($dir)"; fi
  if [ -n "$pid" ]; then stop_pid "$pid" "ckb run ($dir)"; fi
  rm -f "$dir/miner.pid" "$dir/ckb.pid"
}

cmd_stop() {
  local dir
  dir=$(default_dir "${1:-}")
  stop_dir "$dir"
}

alive_str() { if [ -n "$1" ]; then echo "pid $1 alive"; else echo "not running"; fi; }

cmd_status() {
  local dir pid mpid port p2p tip peers p ppid rc=0
  dir=$(default_dir "${1:-}" state)
  [ -f "$dir/ckb.toml" ] || die "$dir holds no ckb node (no ckb.toml)"
  pid=$(live_pid "$dir/ckb.pid" "$dir")
  mpid=$(live_pid "$dir/miner.pid" "$dir")
  port=$(rpc_port_of_dir "$dir")
  p2p=$(p2p_port_of_dir "$dir")
  echo "dir:   $dir"
  echo "node:  $(alive_str "$pid")   rpc 127.0.0.1:$port  p2p 127.0.0.1:$p2p"
  if [ -f "$dir/ckb-miner.toml" ] && { [ -f "$dir/miner.pid" ] || [ -n "$mpid" ]; }; then
    echo "miner: $(alive_str "$mpid")"
  else
    echo "miner: none"
  fi
  if [ -n "$pid" ] && tip=$(tip_of "$port"); then
    peers=$(peer_ids_of "$port" | grep -c . || true)
    echo "tip:   $tip"
    echo "peers: $peers"
  else
    echo "tip:   unknown (RPC not answering)"
    rc=1
  fi
  if [ -f "$dir/peers" ]; then
    while IFS= read -r p; do
      [ -n "$p" ] || continue
      ppid=$(live_pid "$p/ckb.pid" "$p")
      echo "peer:  $p $(alive_str "$ppid")"
    done <"$dir/peers"
  fi
  return "$rc"
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    install) cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    peer) cmd_peer "$@" ;;
    init-peer) cmd_init_peer "$@" ;;
    demo-env)
      cmd_install
      cmd_start "$@"
      ;;
    -h | --help | help)
      usage
      ;;
    "")
      usage
      exit 2
      ;;
    *) die "unknown command '$cmd' (see: $0 --help)" ;;
  esac
}

main "$@"
