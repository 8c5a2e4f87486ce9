#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine or an already set-up one.
# usage: bash tests/run.sh [CARGO TEST ARGS]
#
# It installs what the tests need when it is missing, starts the servers the integration
# tests talk to on 127.0.0.1 only, runs the formatting and lint checks and the whole test
# suite, and stops what it started, whether the tests pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# --- what the tests need -----------------------------------------------------------------
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || { echo "tests/run.sh: $1 is required ($2)" >&2; exit 2; }
}
need_cmd cargo "install the Rust toolchain"
need_cmd tar "apt-get install -y tar"
need_cmd setpriv "apt-get install -y util-linux"

# --- servers ------------------------------------------------------------------------------
# Each file in tests/servers/ defines `start_<name>` (install if missing, start on a free
# loopback port with its own folder under $WORK, wait until it answers, export its address
# as SB_TEST_* variables) and may append PIDs to PIDS. They are started in turn here.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/service-backup-tests.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$1 accepts connections, for at most $2 seconds; $3 names the server.
wait_for_port() {
  local port=$1 limit=$2 name=$3 i
  for ((i = 0; i < limit * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "tests/run.sh: $name did not open port $port within ${limit}s" >&2
  return 1
}

# apt-get install, updating the package lists once when a package is missing.
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

for server in tests/servers/*.sh; do
  [ -e "$server" ] || continue
  # shellcheck source=/dev/null
  source "$server"
  name=$(basename "$server" .sh)
  log "starting $name"
  "start_$name"
done

# --- checks and tests ---------------------------------------------------------------------
# With arguments, only `cargo test ARGS` runs (against the same servers), e.g.
#   bash tests/run.sh -p service-backup --test fanout
if [ $# -gt 0 ]; then
  log "cargo test $*"
  cargo test --locked "$@"
  exit
fi
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked
