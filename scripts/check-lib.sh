# shellcheck shell=bash
# Shared by env-check.sh, demo-check.sh, demo-normal.sh and demo-stress.sh (sourced, not run):
# finding the binaries, the target process, and printing "expected vs actual" lines.
# Every script runs the same way on a Linux host (from a checkout) and inside the compose
# environment's ckb-probe container (binaries in /usr/local/bin).

CHECK_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CHECK_PASSED=0
CHECK_FAILED=0
CHECK_NAME=${CHECK_NAME:-check}

# A binary: $ENV_VAR if set, else in PATH, else this checkout's target/release.
find_bin() { # VAR NAME
  local var=$1 name=$2 v
  v=${!var:-}
  if [ -n "$v" ]; then
    [ -x "$v" ] || { echo "$CHECK_NAME: $var=$v is not executable" >&2; exit 2; }
    echo "$v"
  elif command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
  elif [ -x "$CHECK_SCRIPT_DIR/../target/release/$name" ]; then
    echo "$CHECK_SCRIPT_DIR/../target/release/$name"
  else
    echo "$CHECK_NAME: $name not found (set $var, put it in PATH, or cargo build --release)" >&2
    exit 2
  fi
}

# expect LABEL EXPECTED ACTUAL OK(0/1): one line, counted.
expect() {
  local mark
  if [ "$4" = 0 ]; then
    mark="ok"
    CHECK_PASSED=$((CHECK_PASSED + 1))
  else
    mark="FAIL"
    CHECK_FAILED=$((CHECK_FAILED + 1))
  fi
  printf '  %-4s %-46s expected: %-22s actual: %s\n' "$mark" "$1" "$2" "$3"
}

# expect_ge LABEL MIN ACTUAL [UNIT]
expect_ge() {
  local ok=1
  if [[ "$3" =~ ^[0-9]+([.][0-9]+)?$ ]] && awk -v a="$3" -v b="$2" 'BEGIN { exit !(a >= b) }'; then ok=0; fi
  expect "$1" ">= $2${4:+ $4}" "$3${4:+ $4}" "$ok"
}

# expect_le LABEL MAX ACTUAL [UNIT]
expect_le() {
  local ok=1
  if [[ "$3" =~ ^-?[0-9]+([.][0-9]+)?$ ]] && awk -v a="$3" -v b="$2" 'BEGIN { exit !(a <= b) }'; then ok=0; fi
  expect "$1" "<= $2${4:+ $4}" "$3${4:+ $4}" "$ok"
}

# expect_eq LABEL EXPECTED ACTUAL
expect_eq() {
  local ok=1
  [ "$2" = "$3" ] && ok=0
  expect "$1" "$2" "$3" "$ok"
}

# The closing line and the exit status: 0 when every check was as expected.
finish() {
  local total=$((CHECK_PASSED + CHECK_FAILED))
  if [ "$CHECK_FAILED" = 0 ]; then
    echo "$CHECK_NAME: all $total checks as expected"
    exit 0
  fi
  echo "$CHECK_NAME: $CHECK_FAILED of $total checks NOT as expected"
  exit 1
}

# The node to look at: --pid PID, else the one process running `ckb ... run` (what ckb-probe
# itself picks when no --pid is given). Prints the pid or nothing.
find_ckb_pid() {
  local p args
  for p in $(pgrep -x ckb 2>/dev/null); do
    args=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
    case " $args " in *" run "*) echo "$p"; return 0 ;; esac
  done
  return 0
}

# Starts the CKB-shaped testbed (real RocksDB, statically linked like CKB) with ARGS; sets
# TESTBED_PID and TESTBED_DIR; the measured phase starts at testbed_go. Stopped by stop_testbed.
start_testbed() {
  local bed
  bed=$(find_bin CKB_PROBE_TESTBED_BIN ckb-probe-testbed)
  TESTBED_DIR=$(mktemp -d /tmp/ckb-probe-check.XXXX)
  "$bed" --start-file "$TESTBED_DIR/go" --output "$TESTBED_DIR/truth.json" --db "$TESTBED_DIR/db" "$@" \
    >"$TESTBED_DIR/out" 2>"$TESTBED_DIR/err" &
  TESTBED_PID=$!
  local _
  for _ in $(seq 300); do
    grep -q READY "$TESTBED_DIR/out" 2>/dev/null && return 0
    kill -0 "$TESTBED_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "$CHECK_NAME: the testbed did not start: $(cat "$TESTBED_DIR/err")" >&2
  exit 2
}

# Starts the measured phase; prints the wall-clock time, ms since the epoch.
testbed_go() {
  touch "$TESTBED_DIR/go"
  date +%s%3N
}

stop_testbed() {
  if [ -n "${TESTBED_PID:-}" ]; then
    kill -TERM "$TESTBED_PID" 2>/dev/null || true
    wait "$TESTBED_PID" 2>/dev/null || true
    TESTBED_PID=""
  fi
  if [ -n "${TESTBED_DIR:-}" ]; then rm -rf "$TESTBED_DIR"; TESTBED_DIR=""; fi
}
