#!/bin/sh
# Entrypoint of the `ckb` service in docker-compose.yml, run inside the official nervos/ckb image
# (POSIX sh: the image has no bash). CKB_CHAIN selects the chain:
#   dev      a local dev chain that mines by itself (Dummy PoW, one block every CKB_MINER_DELAY_MS),
#            so RocksDB is busy from the first minute without any peer;
#   testnet  the public testnet (Pudge): a real initial block download from public peers.
# The data directory is the image's /var/lib/ckb (a named volume in the compose file);
# CKB_DATA_DIR overrides it (to try this script on a host).
set -eu
CHAIN=${CKB_CHAIN:-dev}
DELAY=${CKB_MINER_DELAY_MS:-1000}
mkdir -p "${CKB_DATA_DIR:-/var/lib/ckb}"
cd "${CKB_DATA_DIR:-/var/lib/ckb}"

case "$CHAIN" in
  dev | testnet) ;;
  *) echo "ckb-node.sh: CKB_CHAIN must be dev or testnet, not '$CHAIN'" >&2; exit 2 ;;
esac

if [ ! -f ckb.toml ]; then
  # The block assembler's lock arg is a fixed test key: dev-chain rewards are worthless.
  ckb init --chain "$CHAIN" --ba-arg 0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7 --ba-message 0x
  # The RPC stays on init's 127.0.0.1:8114: the ckb-probe sidecar shares this network namespace
  # and reads the node's version and tip there; nothing but the exporter's port is published.
  if [ "$CHAIN" = dev ]; then
    # Mining needs the Miner RPC module (in `init`'s defaults; added if a version drops it).
    grep -q '"Miner"' ckb.toml || sed -i 's/^modules = \[/modules = ["Miner", /' ckb.toml
    # One Dummy worker with a constant delay instead of whatever `init` wrote.
    awk '/^\[\[miner\.workers\]\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' ckb-miner.toml >ckb-miner.toml.new
    printf '\n[[miner.workers]]\nworker_type = "Dummy"\ndelay_type = "Constant"\nvalue = %s\n' "$DELAY" >>ckb-miner.toml.new
    mv ckb-miner.toml.new ckb-miner.toml
  fi
fi

if [ "$CHAIN" = dev ]; then
  ckb run &
  node=$!
  # The miner needs the node's RPC; it retries by itself, a short wait keeps its log clean.
  sleep 5
  ckb miner &
  miner=$!
  trap 'kill -TERM "$miner" "$node" 2>/dev/null; wait "$node"; exit 0' TERM INT
  wait "$node"
  kill -TERM "$miner" 2>/dev/null || true
else
  exec ckb run
fi
