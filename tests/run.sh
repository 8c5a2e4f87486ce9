#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine or an already set-up one.
# usage: bash tests/run.sh [CARGO TEST ARGS]
#
# It installs what the tests need when it is missing, starts the servers the integration
# tests talk to on 127.0.0.1 only, runs the formatting and lint checks and the whole test
# suite, and stops what it started, whether the tests pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

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
# tests/lib.sh defines log, free_port, wait_for_port and apt_install, makes $WORK, and
# stops every PID in PIDS and removes $WORK on exit.
# shellcheck source=tests/lib.sh
source tests/lib.sh

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
